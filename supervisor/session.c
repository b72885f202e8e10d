/*
 * session.c — sessions (one client conversation: ids, streams, replay, expiry) and what comes
 * back to them from their child.
 *
 * Owns: every session, stream and pending request, and the per-tenant tallies. Never calls up
 * into the HTTP layer by name (it answers through the session_transport it was given) and never
 * touches a child (the pool picks it, and routes its messages here through struct pool_client).
 * A request's gates and forwarding are broker.c's; the broker's own listing of a child's tools
 * and the requests held for its verdict are toolcheck.c's (session_int.h is what they share).
 *
 * Routing rules (child → client), within the session the pool routed a message to:
 *   response      → the pending request with that broker id; the caller's id is restored
 *   progress      → the stream of the request whose progressToken it carries
 *   request       → the newest open request's stream (it is "related" while one is pending),
 *                   else the GET stream; with neither, the child gets an error back at once
 *   notifications/message while a request is open → that request's stream; other
 *                   notifications → the GET stream, or dropped when none is open
 * A POST answer starts as application/json and switches to text/event-stream only when
 * something related arrives before the response.
 */
#include "session.h"
#include "session_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "audit.h"
#include "auth.h"
#include "child.h"
#include "contract.h"
#include "errors.h"
#include "frontenv.h"
#include "httpd.h"
#include "jsonrpc.h"
#include "log.h"
#include "pool.h"
#include "quota.h"
#include "util.h"

struct srvreq {
    uint64_t id;         /* the id the client sees */
    cJSON *child_id;     /* the id the child used, as a raw item of its original bytes */
    struct upstream *up; /* the child that asked: the answer goes there (held while waiting) */
};

static void srvreq_free(void *v)
{
    struct srvreq *r = v;
    cJSON_Delete(r->child_id);
    if (r->up != NULL)
        pool_call_end(r->up);
    free(r);
}

static TAILQ_HEAD(, session) all_sessions = TAILQ_HEAD_INITIALIZER(all_sessions);
static struct idmap by_key; /* first 64 bits of the id → session */
static size_t nsessions;
static uint32_t *tenant_sessions;  /* per tenant (index in cfg->tenants) */
static struct idmap pair_sessions; /* tenant index << 32 | manifest index → count */
static size_t npending_total;      /* requests in flight, all sessions */
static uint32_t *tenant_inflight;  /* the same per tenant */
static const struct session_transport *transport; /* the only way up to HTTP */
static struct front *the_front;
/* Answers a tenant's clients have not taken. Never freed: a request may be unaccounted after
 * the module shut down. */
static struct httpd_account *tenant_out;

/* Requests in flight of one principal (tenant and user), shared by its sessions. */
struct ptally {
    char *tenant, *user;
    uint32_t inflight;
    struct httpd_account out; /* answers its clients have not taken */
    unsigned refs;
    struct ptally *next; /* same hash */
};
static struct idmap ptallies; /* FNV-1a of tenant and user → chain of struct ptally */
static char call_nonce[17];   /* this process's: audit call ids stay unique across restarts */
static uint64_t next_call_id;

static const char *const supported_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                                 "2024-11-05"};

static uint64_t id_key(const char *id)
{
    uint64_t k = 0;
    for (int i = 0; i < 16 && id[i] != '\0'; i++) {
        char c = id[i];
        unsigned v = c >= '0' && c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10) & 15;
        k = (k << 4) | v;
    }
    return k;
}

static const struct pool_client session_pool_client;

void session_module_init(struct front *f, const struct session_transport *tr)
{
    transport = tr;
    the_front = f;
    idmap_init(&by_key);
    idmap_init(&pair_sessions);
    tenant_sessions = calloc(f->cfg->ntenants > 0 ? f->cfg->ntenants : 1, sizeof(uint32_t));
    int nodes_rc = toolcheck_module_init(f->cfg->ntenants);
    tenant_inflight = calloc(f->cfg->ntenants > 0 ? f->cfg->ntenants : 1, sizeof(uint32_t));
    tenant_out = calloc(f->cfg->ntenants > 0 ? f->cfg->ntenants : 1, sizeof(*tenant_out));
    for (size_t i = 0; tenant_out != NULL && i < f->cfg->ntenants; i++) {
        const struct config_tenant *t = &f->cfg->tenants[i];
        tenant_out[i].max = t->max_buffered_bytes != 0
                                ? t->max_buffered_bytes
                                : f->cfg->limits.max_buffered_bytes_per_tenant;
        tenant_out[i].what = t->max_buffered_bytes != 0 ? "the tenant's max_buffered_bytes"
                                                        : "limits.max_buffered_bytes_per_tenant";
    }
    idmap_init(&ptallies);
    if (tenant_sessions == NULL || nodes_rc == -1 || tenant_inflight == NULL || tenant_out == NULL)
        fatalx("out of memory");
    uint8_t rnd[8] = {0};
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        log_warn("call_nonce_weak note=\"getrandom failed; audit call ids restart at 1\"");
    util_hex(rnd, sizeof(rnd), call_nonce);
    pool_set_client(&session_pool_client); /* warm children start here */
}

size_t session_count(void)
{
    return nsessions;
}

static uint64_t pair_key(const struct front *f, const struct config_manifest *m,
                         const struct config_tenant *t)
{
    return (uint64_t)(t - f->cfg->tenants) << 32 | (uint64_t)(m - f->cfg->manifests);
}

/* Counts a session in (delta +1) or out (-1) of its tenant's and its (tenant, server) tallies. */
static void tally(const struct session *s, int delta)
{
    uint64_t key = pair_key(s->f, s->m, s->t);
    uintptr_t n = (uintptr_t)idmap_get(&pair_sessions, key);
    n = delta > 0 ? n + 1 : n - 1;
    if (n == 0)
        idmap_del(&pair_sessions, key);
    else if (idmap_put(&pair_sessions, key, (void *)n) == -1)
        log_warn("session_tally_lost tenant=%s server=%s", s->t->name, s->m->name);
    tenant_sessions[s->t - s->f->cfg->tenants] += (uint32_t)delta;
}

static uint64_t ptally_key(const char *tenant, const char *user)
{
    const char *parts[2] = {tenant, user};
    return util_fnv1a(parts, 2);
}

/* The tally of p's tenant and user, created on first use; NULL when out of memory. Names are
 * compared in full: principals whose hashes collide keep separate tallies. */
static struct ptally *ptally_get(const struct front *f, const struct principal *p)
{
    uint64_t key = ptally_key(p->tenant, p->user);
    struct ptally *head = idmap_get(&ptallies, key);
    for (struct ptally *t = head; t != NULL; t = t->next) {
        if (strcmp(t->tenant, p->tenant) == 0 && strcmp(t->user, p->user) == 0) {
            t->refs++;
            return t;
        }
    }
    struct ptally *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->tenant = strdup(p->tenant)) == NULL ||
        (t->user = strdup(p->user)) == NULL || idmap_put(&ptallies, key, t) == -1) {
        if (t != NULL) {
            free(t->tenant);
            free(t->user);
            free(t);
        }
        return NULL;
    }
    t->refs = 1;
    t->next = head;
    t->out.max = f->cfg->limits.max_buffered_bytes_per_principal;
    t->out.what = "limits.max_buffered_bytes_per_principal";
    return t;
}

static void ptally_put(struct ptally *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    uint64_t key = ptally_key(t->tenant, t->user);
    struct ptally *head = idmap_get(&ptallies, key), *prev = NULL;
    for (struct ptally *q = head; q != NULL; prev = q, q = q->next) {
        if (q != t)
            continue;
        if (prev != NULL)
            prev->next = q->next;
        else if (q->next != NULL)
            idmap_put(&ptallies, key, q->next); /* replaces the value: cannot fail */
        else
            idmap_del(&ptallies, key);
        break;
    }
    free(t->tenant);
    free(t->user);
    free(t);
}

/* A client request of s starts (+1) or ends (-1): its principal's and tenant's tallies. */
static void inflight(struct session *s, int delta)
{
    if (s->pt != NULL)
        s->pt->inflight += (uint32_t)delta;
    if (tenant_inflight != NULL)
        tenant_inflight[s->t - s->f->cfg->tenants] += (uint32_t)delta;
}

/* A request of s enters (+1) or leaves (-1) the broker: held or pending. */
void session_requests_add(struct session *s, int delta)
{
    if (delta > 0)
        npending_total++;
    else
        npending_total--;
    inflight(s, delta);
}

/* 0 when s may take one more request in; -1 with a sentence in why. */
int session_inflight_admit(const struct session *s, char *why, size_t whylen)
{
    const struct config_limits *lim = &s->f->cfg->limits;
    if (s->pt != NULL && s->pt->inflight >= lim->max_requests_in_flight_per_principal)
        snprintf(why, whylen,
                 "too many requests in progress for this user of tenant %s "
                 "(limits.max_requests_in_flight_per_principal: %u); retry when some finish",
                 s->t->name, lim->max_requests_in_flight_per_principal);
    else if (tenant_inflight[s->t - s->f->cfg->tenants] >=
             (s->t->max_requests_in_flight != 0 ? s->t->max_requests_in_flight
                                                : lim->max_requests_in_flight_per_tenant))
        snprintf(why, whylen,
                 "too many requests in progress for tenant %s (%s: %u); retry when some finish",
                 s->t->name,
                 s->t->max_requests_in_flight != 0 ? "the tenant's max_requests_in_flight"
                                                   : "limits.max_requests_in_flight_per_tenant",
                 s->t->max_requests_in_flight != 0 ? s->t->max_requests_in_flight
                                                   : lim->max_requests_in_flight_per_tenant);
    else
        return 0;
    return -1;
}

/* Sessions of p (each holds a reference to its tally). */
static unsigned principal_sessions(const struct principal *p)
{
    for (struct ptally *t = idmap_get(&ptallies, ptally_key(p->tenant, p->user)); t != NULL;
         t = t->next)
        if (strcmp(t->tenant, p->tenant) == 0 && strcmp(t->user, p->user) == 0)
            return t->refs;
    return 0;
}

int session_admit(const struct front *f, const struct config_manifest *m,
                  const struct config_tenant *t, const struct principal *p,
                  struct session_refusal *why)
{
    const struct config_limits *lim = &f->cfg->limits;
    size_t ti = (size_t)(t - f->cfg->tenants);
    uint32_t tenant_max = t->max_sessions != 0 ? t->max_sessions : lim->max_sessions_per_tenant;
    uintptr_t of_server = (uintptr_t)idmap_get(&pair_sessions, pair_key(f, m, t));
    why->status = 429;
    why->retry_after_s = 5;
    if (nsessions >= lim->max_sessions) {
        why->status = 503;
        snprintf(why->message, sizeof(why->message),
                 "too many sessions (limits.max_sessions); retry later");
    } else if (principal_sessions(p) >= lim->max_sessions_per_principal) {
        snprintf(why->message, sizeof(why->message),
                 "user %s of tenant %s is at its ceiling of %u sessions "
                 "(limits.max_sessions_per_principal); end one or retry later",
                 p->user, t->name, lim->max_sessions_per_principal);
    } else if (tenant_sessions[ti] >= tenant_max) {
        snprintf(
            why->message, sizeof(why->message),
            "tenant %s is at its ceiling of %u sessions (%s); retry later", t->name, tenant_max,
            t->max_sessions != 0 ? "the tenant's max_sessions" : "limits.max_sessions_per_tenant");
    } else if (m->isolation == CONFIG_ISOLATION_SESSION && of_server >= m->pool_max_per_tenant) {
        /* One child per session: the tenant's children of m are its sessions of m. */
        snprintf(why->message, sizeof(why->message),
                 "tenant %s is at its ceiling of %u sessions of server %s (the manifest's "
                 "pool.max_per_tenant); retry later",
                 t->name, m->pool_max_per_tenant, m->name);
    } else {
        int status = 0;
        if (pool_admit(m, t, &status, &why->retry_after_s, why->message, sizeof(why->message)) == 0)
            return 0;
        why->status = status;
    }
    return -1;
}

size_t session_pending_total(void)
{
    return npending_total;
}

void session_keepalive(void)
{
    /* An SSE comment: keeps proxies from timing idle streams out, and a write is the only way
     * to notice a client that went away while nothing else was being sent. */
    struct session *s;
    TAILQ_FOREACH(s, &all_sessions, link)
    {
        struct stream *st = s->get_stream;
        if (st != NULL && st->req != NULL && st->sse) {
            struct evbuffer *b = evbuffer_new();
            if (b != NULL) {
                evbuffer_add(b, ": keepalive\n\n", 13);
                hreq_stream_send(st->req, b);
                evbuffer_free(b);
            }
        }
    }
}

struct session *session_find(const char *id)
{
    if (id == NULL || strlen(id) != SESSION_ID_LEN)
        return NULL;
    struct session *s = idmap_get(&by_key, id_key(id));
    if (s == NULL || s->closing || strcmp(s->id, id) != 0)
        return NULL;
    return s;
}

void session_touch(struct session *s)
{
    struct timeval tv = {.tv_sec = s->f->cfg->limits.session_idle_s};
    evtimer_add(s->idle_timer, &tv);
}

static void stream_out_clear(struct stream *st);

/* ---- streams ---------------------------------------------------------------------------- */

struct stream *stream_new(struct session *s, enum stream_kind kind, struct hreq *req)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->s = s;
    st->id = ++s->next_stream;
    st->kind = kind;
    st->req = req;
    TAILQ_INSERT_TAIL(&s->streams, st, link);
    if (req != NULL) {
        transport->bind(req, st);
        hreq_account(req, &s->pt->out, &tenant_out[s->t - s->f->cfg->tenants]);
    }
    return st;
}

void stream_start_sse(struct stream *st)
{
    if (st->sse)
        return;
    st->sse = true;
    if (st->req == NULL)
        return;
    transport->start_sse(st->req, st->s);
    /* Priming event: gives the client an id to resume from before any message arrives. */
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        sse_encode(b, NULL, st->id, 0, NULL, 0, 3000);
        hreq_stream_send(st->req, b);
        evbuffer_free(b);
    }
}

static void stream_free(struct stream *st)
{
    struct session *s = st->s;
    if (st->req != NULL) {
        transport->bind(st->req, NULL);
        if (st->sse)
            hreq_stream_end(st->req);
        else
            transport->reply_error(st->req, 503, ERR_SERVER_UNAVAILABLE, "session ended");
        st->req = NULL;
    }
    if (s->get_stream == st)
        s->get_stream = NULL;
    stream_out_clear(st);
    TAILQ_REMOVE(&s->streams, st, link);
    free(st);
}

void stream_detach(struct stream *st)
{
    /* The connection is gone; the request is ours to free. */
    log_debug("stream_detached session=%.8s stream=%" PRIu64 " waiting=%u", st->s->id, st->id,
              st->waiting);
    if (st->req != NULL) {
        hreq_drop(st->req);
        st->req = NULL;
    }
    /* The legacy stream IS the session. A GET stream stays, detached, collecting events for a
     * resumption (Last-Event-ID) or the next GET; a POST stream keeps its requests running. */
    if (st->kind == STREAM_LEGACY)
        session_end(st->s, "client closed the SSE stream");
}

static void stream_write_event(struct stream *st, uint64_t seq, const char *text, size_t len)
{
    if (st->req == NULL)
        return;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    sse_encode(b, st->kind == STREAM_LEGACY ? "message" : NULL, st->id, seq, text, len, -1);
    hreq_stream_send(st->req, b);
    evbuffer_free(b);
}

static void stream_emit(struct stream *st, const char *text, size_t len)
{
    uint64_t seq = ++st->seq;
    sse_ring_push(&st->s->replay, st->id, seq, text, len);
    stream_write_event(st, seq, text, len);
}

static void stream_deliver(struct stream *st, const char *text, size_t len, bool final);

/* Delivers an answer we composed; out of memory, a valid JSON-RPC error in its place (the id
 * is lost with the text, so null). */
void session_deliver_text(struct stream *st, const char *text)
{
    static const char oom[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
                              "\"message\":\"out of memory\"}}";
    if (text == NULL)
        stream_deliver(st, oom, sizeof(oom) - 1, true);
    else
        stream_deliver(st, text, strlen(text), true);
}

static void stream_out_clear(struct stream *st)
{
    for (size_t i = 0; i < st->nout; i++)
        free(st->out[i]);
    free(st->out);
    st->out = NULL;
    st->nout = 0;
}

/* Sends the answers collected in JSON mode: one object, or an array for a batch. */
static void stream_flush_json(struct stream *st)
{
    struct session *s = st->s;
    if (st->req != NULL) {
        struct evbuffer *b = evbuffer_new();
        if (b != NULL && st->batch)
            evbuffer_add(b, "[", 1);
        for (size_t i = 0; b != NULL && i < st->nout; i++) {
            if (i > 0)
                evbuffer_add(b, ",", 1);
            evbuffer_add(b, st->out[i], strlen(st->out[i]));
        }
        if (b != NULL && st->batch)
            evbuffer_add(b, "]", 1);
        transport->bind(st->req, NULL);
        if (b != NULL) {
            size_t n = evbuffer_get_length(b);
            transport->reply_json(st->req, 200, (const char *)evbuffer_pullup(b, -1), n, s);
            evbuffer_free(b);
        } else {
            transport->reply_error(st->req, 500, ERR_INTERNAL, "out of memory");
        }
        st->req = NULL;
    }
    stream_out_clear(st);
    stream_free(st);
}

/* Delivers one message on a stream. `final` marks the answer to one of its requests. */
static void stream_deliver(struct stream *st, const char *text, size_t len, bool final)
{
    if (final && st->waiting > 0)
        st->waiting--;

    if (st->kind == STREAM_POST && !st->sse) {
        if (final) {
            char **n = realloc(st->out, (st->nout + 1) * sizeof(*n));
            char *copy = n != NULL ? strndup(text, len) : NULL;
            if (n != NULL)
                st->out = n;
            if (copy != NULL)
                st->out[st->nout++] = copy;
            if (st->waiting == 0 && !st->guard)
                stream_flush_json(st);
            return;
        }
        /* Something related came before the answer: switch to SSE, answers so far first. */
        stream_start_sse(st);
        for (size_t i = 0; i < st->nout; i++)
            stream_emit(st, st->out[i], strlen(st->out[i]));
        stream_out_clear(st);
    }
    stream_emit(st, text, len);
    if (st->kind == STREAM_POST && st->waiting == 0 && !st->guard)
        stream_free(st);
}

void stream_answer(struct stream *st, const char *text, size_t len)
{
    st->waiting++;
    stream_deliver(st, text, len, true);
}

void stream_guard_release(struct stream *st)
{
    st->guard = false;
    if (st->waiting > 0)
        return;
    if (st->sse) {
        stream_free(st);
    } else if (st->nout > 0) {
        stream_flush_json(st);
    } else {
        if (st->req != NULL) {
            transport->bind(st->req, NULL);
            hreq_reply(st->req, 202, NULL, 0);
            st->req = NULL;
        }
        stream_free(st);
    }
}

static void replay_one(void *arg, const struct sse_event *ev)
{
    struct hreq *req = arg;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    sse_encode(b, NULL, ev->stream, ev->seq, ev->data, ev->len, -1);
    hreq_stream_send(req, b);
    evbuffer_free(b);
}

int session_resume(struct session *s, struct hreq *req, uint64_t stream_id, uint64_t seq)
{
    struct stream *live = NULL, *it;
    TAILQ_FOREACH(it, &s->streams, link)
    {
        if (it->id == stream_id && it->kind != STREAM_LEGACY)
            live = it;
    }
    if (live == NULL && stream_id > s->next_stream)
        return -1;
    transport->start_sse(req, s);
    if (sse_ring_replay(&s->replay, stream_id, seq, replay_one, req) == -1)
        log_warn("sse_replay_gap session=%.8s stream=%" PRIu64 " after=%" PRIu64, s->id, stream_id,
                 seq);
    if (live == NULL) {
        hreq_stream_end(req); /* that stream already finished: nothing more will come */
        return 0;
    }
    if (live->req != NULL) {
        /* The client moved to a new connection; close the old one. */
        transport->bind(live->req, NULL);
        hreq_stream_end(live->req);
    }
    live->req = req;
    live->sse = true;
    transport->bind(req, live);
    hreq_account(req, &s->pt->out, &tenant_out[s->t - s->f->cfg->tenants]);
    if (live->kind == STREAM_GET)
        s->get_stream = live;
    return 0;
}

/* ---- pending requests ------------------------------------------------------------------- */

void session_pending_free(struct pending *p)
{
    struct session *s = p->s;
    idmap_del(&s->f->pending_ids, p->bid);
    TAILQ_REMOVE(&s->pendings, p, link);
    if (p->kind == PENDING_CLIENT) { /* the broker's own listing holds neither drain nor idle */
        s->npending--;
        session_requests_add(s, -1);
    }
    session_pending_destroy(p);
}

void session_pending_destroy(struct pending *p)
{
    if (p->timer != NULL)
        event_free(p->timer);
    if (p->up != NULL)
        pool_call_end(p->up);
    cJSON_Delete(p->client_id);
    free(p->client_key);
    free(p->progress_token);
    principal_free(p->filter_for);
    free(p->tool);
    contract_schemas_unref(p->schemas);
    if (p->quota_slot != NULL)
        quota_release(p->s->f->quotas, p->quota_slot);
    cJSON_Delete(p->audit);
    free(p->held_line);
    free(p);
}

/* ---- audit ------------------------------------------------------------------------------- */

/* A session's audit record: the who/what/where of a request (method NULL for the session's own
 * records). NULL without an audit log. A call's records share its call_id: a seq can change when
 * a failed write is retried, this cannot. A call's target always has its SHA-256 beside it, and
 * so has a string id that could be cut: a record over AUDIT_MAX_LINE keeps only the first
 * AUDIT_CUT_STRING bytes of a long string, and the hash still says which value it was. */
cJSON *session_audit_base(struct session *s, const char *event, const struct principal *caller,
                          const char *method, const char *target, const cJSON *id)
{
    cJSON *b = front_audit_event(s->f, event, caller, s->m->name, target);
    char h[UTIL_SHA256_HEX + 1];
    if (b == NULL)
        return NULL;
    if (target != NULL) {
        util_sha256_hex(target, strlen(target), h);
        if (cJSON_AddStringToObject(b, "target_sha256", h) == NULL) {
            cJSON_Delete(b); /* a target that may be cut, without its hash, would mislead */
            return NULL;
        }
    }
    if (id != NULL) {
        char cid[48];
        snprintf(cid, sizeof(cid), "%s-%" PRIu64, call_nonce, ++next_call_id);
        cJSON_AddStringToObject(b, "call_id", cid);
    }
    if (method != NULL)
        cJSON_AddStringToObject(b, "method", method);
    if (target != NULL && strcmp(method, "tools/call") == 0) {
        const struct config_tool *t = config_tool_find(s->m, target);
        if (t != NULL && t->version != NULL)
            cJSON_AddStringToObject(b, "tool_version", t->version);
    }
    cJSON_AddStringToObject(b, "session", s->id);
    if (id != NULL) /* as the caller sent it: a number or a string */
        cJSON_AddItemToObject(b, "request_id", cJSON_Duplicate(id, 0));
    if (cJSON_IsString(id) && strlen(id->valuestring) > AUDIT_CUT_STRING) {
        util_sha256_hex(id->valuestring, strlen(id->valuestring), h);
        if (cJSON_AddStringToObject(b, "request_id_sha256", h) == NULL) {
            cJSON_Delete(b);
            return NULL;
        }
    }
    return b;
}

/* Renames a call's record (its call and its result share the rest). False out of memory. */
static bool audit_rename(cJSON *ev, const char *event)
{
    return cJSON_ReplaceItemInObjectCaseSensitive(ev, "event", cJSON_CreateString(event));
}

/* The "result" record of an audited call: how it ended. */
static void audit_result(struct pending *p, const char *outcome, size_t bytes_out)
{
    struct session *s = p->s;
    if (p->audit == NULL || p->call_seq == 0)
        return;
    cJSON *ev = cJSON_Duplicate(p->audit, 1);
    if (ev == NULL || !audit_rename(ev, "result")) {
        cJSON_Delete(ev);
        return;
    }
    cJSON_AddNumberToObject(ev, "call_seq", (double)p->call_seq);
    cJSON_AddStringToObject(ev, "outcome", outcome);
    cJSON_AddNumberToObject(ev, "latency_ms", (double)(util_mono_ms() - p->t0_ms));
    cJSON_AddNumberToObject(ev, "bytes_out", (double)bytes_out);
    if (!p->forwarded)
        cJSON_AddFalseToObject(ev, "forwarded"); /* refused or cancelled before it went out */
    pid_t pid = pool_pid(p->up != NULL ? p->up : s->up);
    if (pid > 0)
        cJSON_AddNumberToObject(ev, "child_pid", pid);
    front_audit(s->f, ev);
    p->call_seq = 0; /* one result per call */
}

/* A refusal before the call went anywhere: a call record (forwarded: false) and its result.
 * Takes base, a "call" record. */
void session_audit_refusal(struct session *s, cJSON *base, const char *type)
{
    if (base == NULL)
        return;
    cJSON *call = cJSON_Duplicate(base, 1);
    cJSON_AddFalseToObject(call, "forwarded");
    uint64_t seq = front_audit(s->f, call);
    if (!audit_rename(base, "result")) {
        cJSON_Delete(base);
        return;
    }
    if (seq > 0)
        cJSON_AddNumberToObject(base, "call_seq", (double)seq);
    cJSON_AddStringToObject(base, "outcome", type);
    cJSON_AddNumberToObject(base, "latency_ms", 0);
    front_audit(s->f, base);
}

/* Answers a pending request with a typed error and forgets it. */
void session_pending_fail(struct pending *p, int code, const char *message, const char *type,
                          long retry_after_ms)
{
    struct stream *st = p->st;
    audit_result(p, type != NULL ? type : "error", 0);
    if (st == NULL) { /* the broker's own request: nobody to answer */
        session_pending_free(p);
        return;
    }
    char *text = jsonrpc_error_text(p->client_id, code, message, type, retry_after_ms);
    session_pending_free(p);
    session_deliver_text(st, text);
    free(text);
}

int session_send_to_child(struct session *s, const char *text, size_t len)
{
    return s->up != NULL && !s->closing ? pool_write(s->up, text, len) : -1;
}

int session_send_pending(struct pending *p, const char *text, size_t len)
{
    struct session *s = p->s;
    if (session_send_to_child(s, text, len) == -1)
        return -1;
    p->up = s->up; /* its answer comes from that child, wherever the session goes next */
    pool_call_begin(p->up, p->kind == PENDING_CLIENT);
    return 0;
}

void session_on_pending_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct session *s = p->s;
    char note[160];
    uint32_t ms = p->initialize || p->kind == PENDING_TOOLS_LIST
                      ? s->f->cfg->limits.spawn_timeout_ms
                      : s->f->cfg->limits.request_timeout_ms;
    if (p->tool_cfg != NULL && p->tool_cfg->quota.timeout_ms > 0)
        ms = p->tool_cfg->quota.timeout_ms;
    /* Tell the child to stop working on it: the answer would be dropped anyway. */
    int n = snprintf(note, sizeof(note),
                     "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"
                     "\"requestId\":%" PRIu64 ",\"reason\":\"timeout\"}}",
                     p->bid);
    if (n > 0 && p->up != NULL)
        pool_write(p->up, note, (size_t)n);
    if (p->kind == PENDING_TOOLS_LIST) {
        char why[96];
        snprintf(why, sizeof(why), "tools/list was not answered within %u ms", ms);
        session_pending_free(p);
        toolcheck_fail(s, why);
        return;
    }
    log_warn("request_timeout session=%.8s server=%s tenant=%s timeout_ms=%u", s->id, s->m->name,
             s->t->name, ms);
    char msg[96];
    snprintf(msg, sizeof(msg), "request timed out after %u ms", ms);
    bool init = p->initialize;
    session_pending_fail(p, ERR_TIMEOUT, msg, "timeout", -1);
    if (init)
        session_end(s, "initialize timed out");
}

/* The original bytes of msg's id (from its text when known) as a raw item, so the id goes back
 * to its sender exactly as it came. */
cJSON *session_id_raw(const cJSON *msg, const char *text, size_t len)
{
    size_t a, b;
    char *t;
    if (text != NULL && jsonrpc_id_span(text, len, &a, &b) == 0)
        t = strndup(text + a, b - a);
    else
        t = jsonrpc_id_text(cJSON_GetObjectItemCaseSensitive(msg, "id"));
    cJSON *raw = t != NULL ? cJSON_CreateRaw(t) : NULL;
    free(t);
    return raw;
}

/* msg's text with its id value replaced by `id` (JSON text): spliced into the original bytes
 * when they are known, printed otherwise. malloc'ed; *outlen its length. */
char *session_with_id(cJSON *msg, const char *text, size_t len, const char *id, size_t *outlen)
{
    size_t a, b;
    if (text != NULL && jsonrpc_id_span(text, len, &a, &b) == 0)
        return jsonrpc_splice(text, len, a, b, id, strlen(id), outlen);
    cJSON *raw = cJSON_CreateRaw(id);
    if (raw == NULL)
        return NULL;
    cJSON_Delete(jsonrpc_swap_id(msg, raw));
    char *out = jsonrpc_print(msg);
    if (out != NULL)
        *outlen = strlen(out);
    return out;
}

struct pending *session_pending_by_key(struct session *s, const cJSON *id)
{
    char *key = jsonrpc_id_text(id);
    struct pending *p, *found = NULL;
    TAILQ_FOREACH(p, &s->pendings, link)
    {
        if (key != NULL && strcmp(p->client_key, key) == 0) {
            found = p;
            break;
        }
    }
    free(key);
    return found;
}

/* Refuses one request of a body at once, on its stream. */
int session_refuse(struct stream *st, cJSON *id, int code, const char *message, const char *type,
                   long retry_after_ms)
{
    char *e = jsonrpc_error_text(id, code, message, type, retry_after_ms);
    session_deliver_text(st, e);
    free(e);
    return -1;
}

#define VERSION_META "mcpvisor/version"

/* tools/list: each tool the manifest gives a version shows it in _meta["mcpvisor/version"], so
 * callers can pin it. Returns how many tools were annotated. */
static size_t annotate_versions(const struct config_manifest *m, cJSON *result)
{
    cJSON *tools = cJSON_GetObjectItemCaseSensitive(result, "tools");
    cJSON *it;
    size_t n = 0;
    if (!cJSON_IsArray(tools))
        return 0;
    cJSON_ArrayForEach(it, tools)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        const struct config_tool *t =
            cJSON_IsString(name) ? config_tool_find(m, name->valuestring) : NULL;
        if (t == NULL || t->version == NULL || !cJSON_IsObject(it))
            continue;
        cJSON *meta = cJSON_GetObjectItemCaseSensitive(it, "_meta");
        if (meta == NULL)
            meta = cJSON_AddObjectToObject(it, "_meta");
        if (!cJSON_IsObject(meta))
            continue;
        cJSON_DeleteItemFromObjectCaseSensitive(meta, VERSION_META); /* the server's word: no */
        cJSON_AddStringToObject(meta, VERSION_META, t->version);
        n++;
    }
    return n;
}

/* A child answered a request with something unusable: the caller gets -32012, the log the
 * payload's hash. errs may be NULL. */
static void fail_result(struct session *s, struct pending *p, const char *line, size_t len,
                        int code, const char *type, const char *reason,
                        struct jsonschema_error *errs, size_t nerrs)
{
    char h[UTIL_SHA256_HEX + 1]; /* raw payloads are logged by hash, never passed through */
    util_sha256_hex(line, len, h);
    char qn[LOG_QUOTED_MAX], qr[640]; /* the reason may name members of the child's result */
    log_warn("%s session=%.8s server=%s tool=%s bytes=%zu sha256=%s reason=%s", type, s->id,
             s->m->name, log_quote_str(qn, sizeof(qn), p->tool), len, h,
             log_quote_str(qr, sizeof(qr), reason));
    audit_result(p, type, 0);
    struct stream *st = p->st;
    if (st == NULL) {
        session_pending_free(p);
        return;
    }
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddStringToObject(extra, "reason", reason);
    cJSON_AddStringToObject(extra, "payload_sha256", h);
    const struct config_tool *cfg = p->tool != NULL ? config_tool_find(s->m, p->tool) : NULL;
    if (broker_tool_version(cfg) != NULL)
        cJSON_AddStringToObject(extra, "tool_version", cfg->version);
    if (nerrs > 0) {
        broker_add_errors(extra, errs, nerrs);
    }
    char why[384];
    snprintf(why, sizeof(why), "%s: %s",
             code == ERR_INVALID_RESULT ? "invalid result from the server" : "result refused",
             reason);
    char *et = broker_tool_error_text(p->client_id, code, why, type, p->tool, extra);
    session_pending_free(p);
    session_deliver_text(st, et);
    free(et);
}

bool session_subscribed(const struct session *s, const char *uri)
{
    for (size_t i = 0; i < s->nsubs; i++)
        if (strcmp(s->subs[i], uri) == 0)
            return true;
    return false;
}

/* Whether a session other than s, on the same child, subscribed to uri. */
bool session_others_subscribed(const struct session *s, const char *uri)
{
    const struct session *o;
    TAILQ_FOREACH(o, &all_sessions, link)
    {
        if (o != s && o->up == s->up && session_subscribed(o, uri))
            return true;
    }
    return false;
}

/* Answers a session's initialize from the one the pool's child gave (the child is initialized
 * once; each session is told what it negotiated). */
static bool version_supported(const char *v)
{
    for (size_t i = 0; i < sizeof(supported_versions) / sizeof(supported_versions[0]); i++) {
        if (strcmp(v, supported_versions[i]) == 0)
            return true;
    }
    return false;
}

void session_init_answer(struct session *s, struct pending *p)
{
    const cJSON *r = pool_init_result(s->up);
    cJSON *result = cJSON_Duplicate(r, 1);
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(result, "protocolVersion");
    cJSON *msg = cJSON_CreateObject();
    if (result == NULL || msg == NULL || !cJSON_IsString(pv) ||
        cJSON_AddStringToObject(msg, "jsonrpc", "2.0") == NULL ||
        !cJSON_AddItemToObject(msg, "id", cJSON_CreateRaw(p->client_id->valuestring))) {
        cJSON_Delete(result);
        cJSON_Delete(msg);
        session_pending_fail(p, ERR_INTERNAL, "out of memory", NULL, -1);
        return;
    }
    /* The client's own revision when mcpvisor serves it and it is not newer than the child's
     * (revisions are dates: they compare as text); the child's otherwise, for the client to
     * accept or leave, as negotiation goes. */
    const char *v = pv->valuestring;
    if (p->init_version[0] != '\0' && version_supported(p->init_version) &&
        strcmp(p->init_version, v) < 0) {
        v = p->init_version;
        cJSON_ReplaceItemInObjectCaseSensitive(result, "protocolVersion", cJSON_CreateString(v));
    }
    snprintf(s->proto, sizeof(s->proto), "%s", v);
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(result, "capabilities");
    s->child_has_tools = cJSON_GetObjectItemCaseSensitive(caps, "tools") != NULL;
    cJSON_AddItemToObject(msg, "result", result);
    char *text = jsonrpc_print(msg);
    cJSON_Delete(msg);
    s->ready = true;
    char qu[LOG_QUOTED_MAX];
    log_info("session_ready session=%.8s server=%s tenant=%s user=%s protocol=%s child_pid=%d "
             "shared=true",
             s->id, s->m->name, s->t->name, log_quote_str(qu, sizeof(qu), s->principal->user),
             s->proto, (int)pool_pid(s->up));
    struct stream *st = p->st;
    session_pending_free(p);
    session_deliver_text(st, text);
    free(text);
}

int session_client_message(struct session *s, cJSON *msg, int kind, struct stream *st,
                           const char *text, size_t len, const struct principal *caller)
{
    char *out = NULL;
    size_t outlen = 0;
    struct upstream *to = s->up;
    session_touch(s);
    if (kind == JSONRPC_REQUEST)
        return broker_request(s, msg, st, text, len, caller, false);

    if (kind == JSONRPC_RESPONSE) {
        /* The client answers a request the child made: give the child its own id back. */
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
        struct srvreq *r = NULL;
        uint64_t rid;
        if (jsonrpc_broker_id(id, &rid))
            r = idmap_del(&s->srvreqs, rid);
        if (r == NULL) {
            log_warn("client_response_unknown session=%.8s note=\"no such server request\"", s->id);
            cJSON_Delete(msg);
            return 0;
        }
        out = session_with_id(msg, text, len, r->child_id->valuestring, &outlen);
        to = r->up; /* still alive: r held it */
        if (out != NULL && !s->closing && pool_write(to, out, outlen) == -1)
            log_warn("client_message_dropped session=%.8s reason=child_input_full", s->id);
        free(out);
        srvreq_free(r);
        cJSON_Delete(msg);
        return 0;
    } else if (kind == JSONRPC_NOTIFICATION) {
        const char *method = jsonrpc_method(msg);
        if (strncmp(method, "notifications/", 14) != 0) {
            /* A request sent without an id would reach the server unchecked and unaudited, and
             * a notification cannot be answered: dropped. */
            char q[96];
            log_warn("client_notification_dropped session=%.8s method=%s note=\"only "
                     "notifications/* may be sent without an id\"",
                     s->id, log_quote(q, sizeof(q), method, strlen(method)));
            cJSON_Delete(msg);
            return 0;
        }
        if (method != NULL && strcmp(method, "notifications/cancelled") == 0) {
            /* Rare: re-serialised, since the id to rewrite is nested in params. */
            cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
            cJSON *rid = cJSON_GetObjectItemCaseSensitive(params, "requestId");
            struct pending *p = rid != NULL ? session_pending_by_key(s, rid) : NULL;
            if (p == NULL) {
                /* Still waiting for the tools to be verified: never sent, so nothing to tell
                 * the child; the request is answered as cancelled. */
                toolcheck_held_cancel(s, rid);
                cJSON_Delete(msg);
                return 0;
            }
            cJSON_ReplaceItemInObjectCaseSensitive(params, "requestId",
                                                   cJSON_CreateNumber((double)p->bid));
            if (p->up != NULL)
                to = p->up; /* the child it went to, even if the session moved since */
            session_pending_fail(p, ERR_CANCELLED, "request cancelled by the client", NULL, -1);
            text = NULL;
        }
        if (strcmp(method, "notifications/initialized") == 0 && !pool_passthrough(s->up)) {
            /* The pool initialized the child once, for every session it serves. */
            cJSON_Delete(msg);
            return 0;
        }
        if (s->m->isolation == CONFIG_ISOLATION_SHARED &&
            cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(msg, "params"))) {
            broker_principal_meta(msg, NULL); /* nobody speaks for another tenant */
            text = NULL;
        }
        if (text != NULL) {
            out = strndup(text, len);
            outlen = len;
        } else {
            out = jsonrpc_print(msg);
            outlen = out != NULL ? strlen(out) : 0;
        }
    }
    bool initialized = kind == JSONRPC_NOTIFICATION && jsonrpc_method(msg) != NULL &&
                       strcmp(jsonrpc_method(msg), "notifications/initialized") == 0;
    cJSON_Delete(msg);
    if (out == NULL)
        return -1;
    if (s->closing || to == NULL || pool_write(to, out, outlen) == -1)
        log_warn("client_message_dropped session=%.8s reason=child_input_full", s->id);
    free(out);
    /* The child may now be asked for its tools: after the client's initialized, as the
     * lifecycle requires. */
    if (initialized && s->ready && s->tools_state == TOOLS_UNVERIFIED)
        toolcheck_start(s);
    return 0;
}

/* ---- child → client ---------------------------------------------------------------------- */

static struct stream *newest_pending_stream(struct session *s)
{
    struct pending *p;
    TAILQ_FOREACH_REVERSE(p, &s->pendings, pending_list, link)
    {
        if (p->st != NULL)
            return p->st;
    }
    return NULL;
}

/* The request of this session that a child's answer names, or NULL. */
static struct pending *pending_answered(struct session *s, const cJSON *msg)
{
    uint64_t bid;
    struct pending *p = NULL;
    if (jsonrpc_broker_id(cJSON_GetObjectItemCaseSensitive(msg, "id"), &bid))
        p = idmap_get(&s->f->pending_ids, bid);
    return p != NULL && p->s == s ? p : NULL;
}

static void child_response(struct session *s, cJSON *msg, const char *line, size_t len)
{
    struct pending *p = pending_answered(s, msg);
    if (p == NULL) {
        log_debug("child_response_dropped session=%.8s note=\"late or unknown id\"", s->id);
        cJSON_Delete(msg);
        return;
    }
    if (p->kind == PENDING_TOOLS_LIST) {
        toolcheck_list_answer(s, p, msg, len);
        return;
    }
    size_t max_result = p->tool_cfg != NULL ? p->tool_cfg->quota.max_result_bytes : 0;
    if (max_result > 0 && len > max_result) {
        char why[192];
        snprintf(why, sizeof(why),
                 "the result is %zu bytes, over the tool's ceiling of %zu (quota.max_result_bytes)",
                 len, max_result);
        cJSON_Delete(msg);
        fail_result(s, p, line, len, ERR_QUOTA_EXCEEDED, "quota_exceeded", why, NULL, 0);
        return;
    }
    if (p->tool != NULL) {
        char why[256];
        struct jsonschema_error errs[CONTRACT_MAX_ERRORS];
        size_t nerrs = 0;
        if (contract_check_result(p->schemas, msg, why, sizeof(why), errs, CONTRACT_MAX_ERRORS,
                                  &nerrs) == -1) {
            cJSON_Delete(msg);
            fail_result(s, p, line, len, ERR_INVALID_RESULT, "invalid_result", why, errs, nerrs);
            return;
        }
    }
    if (p->initialize) {
        const cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(result, "protocolVersion");
        if (result != NULL) {
            if (!cJSON_IsString(pv) || !version_supported(pv->valuestring)) {
                log_warn("child_bad_initialize session=%.8s server=%s note=\"unsupported or "
                         "missing protocolVersion\"",
                         s->id, s->m->name);
                cJSON_Delete(msg);
                session_pending_fail(
                    p, ERR_INVALID_RESULT,
                    "the server negotiated a protocol version mcpvisor does not serve",
                    "invalid_result", -1);
                session_end(s, "server negotiated an unsupported protocol version");
                return;
            }
            snprintf(s->proto, sizeof(s->proto), "%s", pv->valuestring);
            s->ready = true;
            pool_started(s->up);
            const cJSON *caps = cJSON_GetObjectItemCaseSensitive(result, "capabilities");
            s->child_has_tools = cJSON_GetObjectItemCaseSensitive(caps, "tools") != NULL;
            char qu[LOG_QUOTED_MAX];
            log_info("session_ready session=%.8s server=%s tenant=%s user=%s protocol=%s", s->id,
                     s->m->name, s->t->name, log_quote_str(qu, sizeof(qu), s->principal->user),
                     s->proto);
        }
    }
    struct stream *st = p->st;
    bool failed_init = p->initialize && !s->ready;
    size_t outlen = 0;
    if (p->filter_for != NULL) {
        cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
        const cJSON *listed = cJSON_GetObjectItemCaseSensitive(result, "tools");
        /* A client's own listing costs the front as much as the broker's: the same budget. */
        if (toolcheck_spend(s, len, (size_t)cJSON_GetArraySize(listed), 0) == -1) {
            char why[512];
            snprintf(why, sizeof(why), "server unavailable: %s; retry later", s->tools_error);
            cJSON_Delete(msg);
            session_pending_fail(p, ERR_SERVER_UNAVAILABLE, why, "server_unavailable",
                                 (long)(s->over_budget_until_ms - util_mono_ms()));
            return;
        }
        size_t changed = auth_filter_tools(s->m, p->filter_for, result);
        changed += toolcheck_filter_listing(s, result);
        changed += annotate_versions(s->m, result);
        if (changed > 0)
            line = NULL; /* changed: print it */
    }
    char *text = session_with_id(msg, line, len, p->client_id->valuestring, &outlen);
    if (p->audit != NULL) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(msg, "result");
        bool tool_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "isError"));
        audit_result(p, e != NULL ? "error" : tool_error ? "tool_error" : "ok", len);
    }
    cJSON_Delete(msg);
    session_pending_free(p);
    if (text != NULL) {
        stream_deliver(st, text, outlen, true);
        free(text);
    }
    if (failed_init)
        session_end(s, "initialize failed");
    else if (!s->closing && s->ready && s->tools_state == TOOLS_UNVERIFIED && s->nheld > 0)
        toolcheck_start(s);
}

/* A line that looked like an answer to one of our requests but is not a valid JSON-RPC
 * response: the request fails now rather than at its timeout. */
static void child_malformed_response(struct session *s, cJSON *msg, const char *line, size_t len)
{
    struct pending *p = pending_answered(s, msg);
    cJSON_Delete(msg);
    if (p == NULL)
        return;
    if (p->kind == PENDING_TOOLS_LIST) {
        session_pending_free(p);
        toolcheck_fail(s, "tools/list: the answer is not a valid JSON-RPC response");
        return;
    }
    bool init = p->initialize;
    fail_result(s, p, line, len, ERR_INVALID_RESULT, "invalid_result",
                "not a valid JSON-RPC response", NULL, 0);
    if (init)
        session_end(s, "the server's initialize answer is malformed");
}

static void child_request_to_client(struct session *s, struct upstream *from, cJSON *msg,
                                    const char *line, size_t len)
{
    struct stream *st = newest_pending_stream(s);
    if (st == NULL)
        st = s->get_stream;
    cJSON *child_id = session_id_raw(msg, line, len);
    if (child_id == NULL) {
        cJSON_Delete(msg);
        return;
    }
    if (st == NULL || s->srvreqs.len >= s->f->cfg->limits.max_pending_per_session) {
        char *e = jsonrpc_error_text(child_id, ERR_INTERNAL,
                                     st == NULL ? "no client stream is open to carry this request"
                                                : "too many server requests in progress",
                                     NULL, -1);
        if (e != NULL) {
            pool_write(from, e, strlen(e));
            free(e);
        }
        cJSON_Delete(child_id);
        cJSON_Delete(msg);
        return;
    }
    struct srvreq *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        cJSON_Delete(child_id);
        cJSON_Delete(msg);
        return;
    }
    r->id = ++s->next_srvreq;
    r->child_id = child_id;
    if (idmap_put(&s->srvreqs, r->id, r) == -1) {
        cJSON_Delete(child_id);
        free(r);
        cJSON_Delete(msg);
        return;
    }
    r->up = from;
    pool_call_begin(from, false);
    char rid[24];
    size_t outlen = 0;
    snprintf(rid, sizeof(rid), "%" PRIu64, r->id);
    char *text = session_with_id(msg, line, len, rid, &outlen);
    cJSON_Delete(msg);
    if (text != NULL) {
        stream_deliver(st, text, outlen, false);
        free(text);
    }
}

static void child_notification(struct session *s, cJSON *msg, const char *line, size_t len)
{
    const char *method = jsonrpc_method(msg);
    struct stream *st = NULL;
    if (strcmp(method, "notifications/progress") == 0) {
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(params, "progressToken");
        char *t = tok != NULL ? jsonrpc_print(tok) : NULL;
        struct pending *p, *found = NULL;
        uint64_t bid;
        if (pool_multi(s->up) && jsonrpc_broker_id(tok, &bid)) {
            /* The child had the broker id as token: the caller's goes back in its place. */
            found = idmap_get(&s->f->pending_ids, bid);
            if (found != NULL && (found->s != s || !found->token_rewritten))
                found = NULL;
            cJSON *raw = found != NULL ? cJSON_CreateRaw(found->progress_token) : NULL;
            cJSON *pm = cJSON_GetObjectItemCaseSensitive(msg, "params");
            if (raw == NULL || !cJSON_ReplaceItemInObjectCaseSensitive(pm, "progressToken", raw)) {
                cJSON_Delete(raw);
                found = NULL;
            }
            line = NULL;
        } else {
            TAILQ_FOREACH(p, &s->pendings, link)
            {
                if (t != NULL && p->progress_token != NULL && strcmp(t, p->progress_token) == 0) {
                    found = p;
                    break;
                }
            }
        }
        free(t);
        if (found == NULL && line == NULL) { /* a stray token never reaches another session */
            cJSON_Delete(msg);
            return;
        }
        st = found != NULL ? found->st : NULL;
    } else if (strcmp(method, "notifications/message") == 0) {
        st = newest_pending_stream(s);
    } else if (strcmp(method, "notifications/tools/list_changed") == 0 &&
               s->tools_state != TOOLS_UNVERIFIED) {
        toolcheck_start(s); /* the client re-lists after this: its request waits for us */
    }
    if (st == NULL)
        st = s->get_stream;
    if (st == NULL) {
        char qm[96];
        log_debug("child_notification_dropped session=%.8s method=%s note=\"no stream open\"",
                  s->id, log_quote_str(qm, sizeof(qm), method));
        cJSON_Delete(msg);
        return;
    }
    char *printed = line == NULL ? jsonrpc_print(msg) : NULL;
    cJSON_Delete(msg);
    if (line == NULL) {
        if (printed == NULL)
            return;
        line = printed;
        len = strlen(printed);
    }
    stream_deliver(st, line, len, false); /* forwarded as the child wrote it, unless rewritten */
    free(printed);
}

static void on_child_message(struct session *s, struct upstream *from, cJSON *msg,
                             enum jsonrpc_kind kind, const char *line, size_t len)
{
    if (s->closing) {
        cJSON_Delete(msg);
        return;
    }
    if (kind == JSONRPC_RESPONSE)
        child_response(s, msg, line, len);
    else if (kind == JSONRPC_INVALID)
        child_malformed_response(s, msg, line, len);
    else if (kind == JSONRPC_REQUEST)
        child_request_to_client(s, from, msg, line, len);
    else
        child_notification(s, msg, line, len);
}

/* ---- what the pool asks of sessions ------------------------------------------------------ */

static struct session *pool_owner(const struct upstream *up, uint64_t bid)
{
    struct pending *p = idmap_get(&the_front->pending_ids, bid);
    return p != NULL && p->up == up && !p->s->closing ? p->s : NULL;
}

static bool pool_busy(const struct session *s, const struct upstream *up)
{
    const struct pending *p;
    TAILQ_FOREACH(p, &s->pendings, link)
    {
        if (p->up == up && p->kind == PENDING_CLIENT)
            return true;
    }
    return false;
}

static struct session *pool_sole_caller(const struct upstream *up)
{
    struct session *s, *found = NULL;
    TAILQ_FOREACH(s, &all_sessions, link)
    {
        if (!pool_busy(s, up))
            continue;
        if (found != NULL)
            return NULL;
        found = s;
    }
    return found;
}

static bool pool_subscribed(const struct session *s, const char *uri)
{
    return session_subscribed(s, uri);
}

/* The session's tools are judged again on the child it now talks to. */
static void tools_forget(struct session *s)
{
    /* A new child's first listing is not a change of the old one's: no back-off carried over. */
    s->budget.doublings = 0;
    s->budget.last_start_ms = 0;
    if (s->tools_state == TOOLS_LISTING)
        return; /* its listing pending failed with the child; toolcheck lists again */
    s->tools_state = TOOLS_UNVERIFIED;
    s->contract_gen++;
}

static void pool_lost(struct session *s, const char *why, bool restarting)
{
    if (s->closing)
        return;
    if (!restarting) {
        log_info("session_child_gone session=%.8s server=%s tenant=%s reason=\"%s\"", s->id,
                 s->m->name, s->t->name, why);
        session_end(s, why);
        return;
    }
    /* A shared child crashed (or was replaced): what went to it is lost, the session goes on. */
    char msg[256];
    snprintf(msg, sizeof(msg),
             "server unavailable: the server process serving this call ended (%s); it is being "
             "restarted, retry",
             why);
    struct pending *p, *next;
    bool listing_lost = false;
    for (p = TAILQ_FIRST(&s->pendings); p != NULL; p = next) {
        next = TAILQ_NEXT(p, link);
        if (p->up != s->up)
            continue; /* not sent, or sent to a child it talked to before */
        if (p->kind == PENDING_TOOLS_LIST) {
            session_pending_free(p);
            listing_lost = true;
            continue;
        }
        session_pending_fail(p, ERR_SERVER_UNAVAILABLE, msg, "server_unavailable",
                             POOL_BACKOFF_MIN_MS);
    }
    if (listing_lost && s->tools_state == TOOLS_LISTING)
        s->tools_state = TOOLS_UNVERIFIED;
    tools_forget(s);
    long retry = pool_unavailable_ms(s->up);
    if (s->ready || retry < 0)
        return;
    /* Its initialize waits for a child that keeps failing: answered now, not at its timeout. */
    for (p = TAILQ_FIRST(&s->pendings); p != NULL; p = next) {
        next = TAILQ_NEXT(p, link);
        if (p->init_local)
            session_pending_fail(p, ERR_SERVER_UNAVAILABLE, SESSION_CIRCUIT_OPEN,
                                 "server_unavailable", retry);
    }
    session_end(s, why);
}

/* Its child was replaced (pool.max_calls, max_age_s): calls in flight finish on the old one. */
static void pool_moved(struct session *s, struct upstream *to)
{
    s->up = to;
    tools_forget(s);
}

static void pool_ready(struct session *s)
{
    struct pending *p, *next;
    for (p = TAILQ_FIRST(&s->pendings); p != NULL; p = next) {
        next = TAILQ_NEXT(p, link);
        if (p->init_local)
            session_init_answer(s, p);
    }
    if (!s->closing && s->ready && s->tools_state == TOOLS_UNVERIFIED && s->nheld > 0)
        toolcheck_start(s);
}

static const struct pool_client session_pool_client = {
    pool_owner, pool_sole_caller, pool_subscribed, on_child_message,
    pool_lost,  pool_moved,       pool_ready,
};

/* ---- life cycle -------------------------------------------------------------------------- */

/* The credential that created the session expired: its open streams end with it (requests
 * need a fresh token anyway: every one is authenticated). */
static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    char qu[LOG_QUOTED_MAX];
    log_info("session_credential_expired session=%.8s user=%s", s->id,
             log_quote_str(qu, sizeof(qu), s->principal->user));
    if (s->legacy_sse) {
        session_end(s, "the credential expired");
        return;
    }
    if (s->get_stream != NULL && s->get_stream->req != NULL) {
        struct stream *st = s->get_stream;
        transport->bind(st->req, NULL);
        hreq_stream_end(st->req);
        st->req = NULL;
    }
}

void session_refresh_expiry(struct session *s, const struct principal *p)
{
    if (p->exp <= 0)
        return;
    if (s->expiry_timer == NULL) {
        s->expiry_timer = evtimer_new(s->f->base, on_expiry, s);
        if (s->expiry_timer == NULL)
            return;
    }
    int64_t now = util_wall_s();
    struct timeval tv = {.tv_sec = p->exp > now ? (time_t)(p->exp - now) : 0};
    evtimer_add(s->expiry_timer, &tv);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    if (s->npending > 0 || s->nheld > 0 || s->tools_state == TOOLS_LISTING) {
        session_touch(s);
        return;
    }
    log_info("session_idle session=%.8s idle_s=%u", s->id, s->f->cfg->limits.session_idle_s);
    session_end(s, "session idle timeout");
}

struct session *session_new(struct front *f, const struct config_manifest *m,
                            const struct config_tenant *t, const struct principal *p,
                            bool legacy_sse)
{
    struct session *s = calloc(1, sizeof(*s));
    uint8_t rnd[16];
    if (s == NULL)
        return NULL;
    s->f = f;
    s->m = m;
    s->t = t;
    s->principal = principal_dup(p);
    s->pt = s->principal != NULL ? ptally_get(f, s->principal) : NULL;
    if (s->pt == NULL) {
        principal_free(s->principal);
        free(s);
        return NULL;
    }
    s->legacy_sse = legacy_sse;
    TAILQ_INIT(&s->streams);
    TAILQ_INIT(&s->pendings);
    TAILQ_INIT(&s->held);
    idmap_init(&s->srvreqs);
    s->held_timer = evtimer_new(f->base, toolcheck_on_held_timeout, s);
    s->list_timer = evtimer_new(f->base, toolcheck_on_list_timer, s);
    if (s->held_timer == NULL || s->list_timer == NULL)
        goto fail;
    do {
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            goto fail;
        util_hex(rnd, sizeof(rnd), s->id);
    } while (idmap_get(&by_key, id_key(s->id)) != NULL);
    if (sse_ring_init(&s->replay, f->cfg->limits.sse_replay_events, SESSION_REPLAY_MAX_BYTES) == -1)
        goto fail;
    s->idle_timer = evtimer_new(f->base, on_idle, s);
    if (s->idle_timer == NULL || idmap_put(&by_key, id_key(s->id), s) == -1)
        goto fail;
    TAILQ_INSERT_TAIL(&all_sessions, s, link);
    nsessions++;
    tally(s, +1);
    session_touch(s);
    s->up = pool_attach(s, m, t);
    if (s->up == NULL) {
        session_end(s, "cannot have a server started (out of memory, or limits.max_children)");
        return NULL;
    }
    char qu[LOG_QUOTED_MAX], qa[LOG_QUOTED_MAX];
    log_info("session_start session=%.8s server=%s tenant=%s user=%s agent=%s transport=%s", s->id,
             m->name, t->name, log_quote_str(qu, sizeof(qu), p->user),
             log_quote_str(qa, sizeof(qa), p->agent), legacy_sse ? "sse" : "streamable");
    cJSON *ev = session_audit_base(s, "session_start", p, NULL, NULL, NULL);
    if (ev != NULL) {
        cJSON_AddStringToObject(ev, "transport", legacy_sse ? "sse" : "streamable");
        front_audit(f, ev);
    }
    return s;
fail:
    if (s->idle_timer != NULL)
        event_free(s->idle_timer);
    if (s->held_timer != NULL)
        event_free(s->held_timer);
    if (s->list_timer != NULL)
        event_free(s->list_timer);
    sse_ring_free(&s->replay);
    ptally_put(s->pt);
    principal_free(s->principal);
    free(s);
    return NULL;
}

static void session_release(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    for (size_t i = 0; i < s->nsubs; i++)
        free(s->subs[i]);
    free(s->subs);
    sse_ring_free(&s->replay);
    idmap_clear(&s->srvreqs, srvreq_free);
    contract_free(s->contract);
    contract_free(s->listing);
    toolcheck_nodes_set(s, &s->contract_nodes, 0);
    toolcheck_nodes_set(s, &s->listing_nodes, 0);
    ptally_put(s->pt);
    event_free(s->held_timer);
    event_free(s->list_timer);
    event_free(s->idle_timer);
    if (s->expiry_timer != NULL)
        event_free(s->expiry_timer);
    principal_free(s->principal);
    free(s);
}

void session_end(struct session *s, const char *why)
{
    if (s->closing)
        return;
    s->closing = true;
    idmap_del(&by_key, id_key(s->id));
    TAILQ_REMOVE(&all_sessions, s, link);
    nsessions--;
    tally(s, -1);
    evtimer_del(s->idle_timer);
    evtimer_del(s->list_timer);
    log_info("session_end session=%.8s server=%s tenant=%s reason=\"%s\"", s->id, s->m->name,
             s->t->name, why);
    cJSON *ev = session_audit_base(s, "session_end", s->principal, NULL, NULL, NULL);
    if (ev != NULL) {
        cJSON_AddStringToObject(ev, "reason", why);
        front_audit(s->f, ev);
    }

    char msg[192];
    snprintf(msg, sizeof(msg), "session ended: %s", why);
    struct pending *p;
    toolcheck_held_refuse_all(s, msg);
    while ((p = TAILQ_FIRST(&s->pendings)) != NULL)
        session_pending_fail(p, ERR_SERVER_UNAVAILABLE, msg, "server_unavailable", -1);
    struct stream *st;
    while ((st = TAILQ_FIRST(&s->streams)) != NULL)
        stream_free(st);
    /* A child of its own is let go as the stdio transport asks: stdin closed, then a kill after
     * a grace period. A shared one stays for the others (and idle reaping). */
    if (s->up != NULL)
        pool_detach(s->up, s);
    /* Callers up the stack may still hold s or its child: free on the next loop turn. */
    struct timeval zero = {0, 0};
    if (event_base_once(s->f->base, -1, EV_TIMEOUT, session_release, s, &zero) == -1)
        log_error("cannot schedule session release session=%.8s", s->id);
}

void session_module_shutdown(struct front *f, const char *why)
{
    struct session *s;
    while ((s = TAILQ_FIRST(&all_sessions)) != NULL)
        session_end(s, why);
    (void)f;
    pool_module_shutdown();
    free(tenant_sessions);
    toolcheck_module_shutdown();
    free(tenant_inflight);
    tenant_sessions = tenant_inflight = NULL;
    idmap_free(&pair_sessions);
}
