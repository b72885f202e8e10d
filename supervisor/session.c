/*
 * session.c — sessions, their streams, and the broker between a session and its child.
 *
 * Routing rules (child → client):
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

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth.h"
#include "child.h"
#include "errors.h"
#include "front.h"
#include "http.h"
#include "jsonrpc.h"
#include "log.h"

struct srvreq {
    uint64_t id;     /* the id the client sees */
    cJSON *child_id; /* the id the child used, as a raw item of its original bytes */
};

static void srvreq_free(void *v)
{
    struct srvreq *r = v;
    cJSON_Delete(r->child_id);
    free(r);
}

static TAILQ_HEAD(, session) all_sessions = TAILQ_HEAD_INITIALIZER(all_sessions);
static struct idmap by_key; /* first 64 bits of the id → session */
static size_t nsessions;
static size_t npending_total; /* requests in flight, all sessions */

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

void session_module_init(struct front *f)
{
    (void)f;
    idmap_init(&by_key);
}

size_t session_count(void)
{
    return nsessions;
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
                evhttp_send_reply_chunk(st->req, b);
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

struct stream *stream_new(struct session *s, enum stream_kind kind, struct evhttp_request *req)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->s = s;
    st->id = ++s->next_stream;
    st->kind = kind;
    st->req = req;
    TAILQ_INSERT_TAIL(&s->streams, st, link);
    if (req != NULL)
        http_conn_bind(s->f, req, st);
    return st;
}

void stream_start_sse(struct stream *st)
{
    if (st->sse)
        return;
    st->sse = true;
    if (st->req == NULL)
        return;
    http_start_sse(st->req, st->s);
    /* Priming event: gives the client an id to resume from before any message arrives. */
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        sse_encode(b, NULL, st->id, 0, NULL, 0, 3000);
        evhttp_send_reply_chunk(st->req, b);
        evbuffer_free(b);
    }
}

static void stream_free(struct stream *st)
{
    struct session *s = st->s;
    if (st->req != NULL) {
        http_conn_bind(s->f, st->req, NULL);
        if (st->sse)
            evhttp_send_reply_end(st->req);
        else
            http_reply_error(st->req, 503, ERR_SERVER_UNAVAILABLE, "session ended");
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
    /* The connection is gone; libevent left the request to us to free. */
    log_debug("stream_detached session=%.8s stream=%" PRIu64 " waiting=%u", st->s->id, st->id,
              st->waiting);
    if (st->req != NULL) {
        if (evhttp_request_get_connection(st->req) == NULL)
            evhttp_request_free(st->req);
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
    evhttp_send_reply_chunk(st->req, b);
    evbuffer_free(b);
}

static void stream_emit(struct stream *st, const char *text, size_t len)
{
    uint64_t seq = ++st->seq;
    sse_ring_push(&st->s->replay, st->id, seq, text, len);
    stream_write_event(st, seq, text, len);
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
        http_conn_bind(s->f, st->req, NULL);
        if (b != NULL) {
            size_t n = evbuffer_get_length(b);
            http_reply_json(st->req, 200, (const char *)evbuffer_pullup(b, -1), n, s);
            evbuffer_free(b);
        } else {
            http_reply_error(st->req, 500, ERR_INTERNAL, "out of memory");
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
            http_conn_bind(st->s->f, st->req, NULL);
            evhttp_send_reply(st->req, 202, "Accepted", NULL);
            st->req = NULL;
        }
        stream_free(st);
    }
}

static void replay_one(void *arg, const struct sse_event *ev)
{
    struct evhttp_request *req = arg;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    sse_encode(b, NULL, ev->stream, ev->seq, ev->data, ev->len, -1);
    evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
}

int session_resume(struct session *s, struct evhttp_request *req, uint64_t stream_id, uint64_t seq)
{
    struct stream *live = NULL, *it;
    TAILQ_FOREACH(it, &s->streams, link)
    {
        if (it->id == stream_id && it->kind != STREAM_LEGACY)
            live = it;
    }
    if (live == NULL && stream_id > s->next_stream)
        return -1;
    http_start_sse(req, s);
    if (sse_ring_replay(&s->replay, stream_id, seq, replay_one, req) == -1)
        log_warn("sse_replay_gap session=%.8s stream=%" PRIu64 " after=%" PRIu64, s->id, stream_id,
                 seq);
    if (live == NULL) {
        evhttp_send_reply_end(req); /* that stream already finished: nothing more will come */
        return 0;
    }
    if (live->req != NULL) {
        /* The client moved to a new connection; close the old one. */
        http_conn_bind(s->f, live->req, NULL);
        evhttp_send_reply_end(live->req);
    }
    live->req = req;
    live->sse = true;
    http_conn_bind(s->f, req, live);
    if (live->kind == STREAM_GET)
        s->get_stream = live;
    return 0;
}

/* ---- pending requests ------------------------------------------------------------------- */

static void pending_free(struct pending *p)
{
    struct session *s = p->s;
    idmap_del(&s->f->pending_ids, p->bid);
    TAILQ_REMOVE(&s->pendings, p, link);
    s->npending--;
    npending_total--;
    if (p->timer != NULL)
        event_free(p->timer);
    cJSON_Delete(p->client_id);
    free(p->client_key);
    free(p->progress_token);
    principal_free(p->filter_for);
    free(p);
}

/* Answers a pending request with a typed error and forgets it. */
static void pending_fail(struct pending *p, int code, const char *message, const char *type,
                         long retry_after_ms)
{
    struct stream *st = p->st;
    char *text = jsonrpc_error_text(p->client_id, code, message, type, retry_after_ms);
    pending_free(p);
    if (text != NULL) {
        stream_deliver(st, text, strlen(text), true);
        free(text);
    } else {
        stream_deliver(st,
                       "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
                       "\"message\":\"out of memory\"}}",
                       75, true);
    }
}

static int send_to_child(struct session *s, const char *text, size_t len)
{
    if (s->child != NULL)
        return child_write(s->child, text, len);
    if (s->spawn == NULL || s->nprespawn == SESSION_PRESPAWN_MAX)
        return -1;
    char *copy = strndup(text, len);
    if (copy == NULL)
        return -1;
    s->prespawn[s->nprespawn++] = copy;
    return 0;
}

static void on_pending_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct session *s = p->s;
    char note[160];
    uint32_t ms =
        p->initialize ? s->f->cfg->limits.spawn_timeout_ms : s->f->cfg->limits.request_timeout_ms;
    /* Tell the child to stop working on it: the answer would be dropped anyway. */
    int n = snprintf(note, sizeof(note),
                     "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"
                     "\"requestId\":%" PRIu64 ",\"reason\":\"timeout\"}}",
                     p->bid);
    if (n > 0 && s->child != NULL)
        child_write(s->child, note, (size_t)n);
    log_warn("request_timeout session=%.8s server=%s tenant=%s timeout_ms=%u", s->id, s->m->name,
             s->t->name, ms);
    char msg[96];
    snprintf(msg, sizeof(msg), "request timed out after %u ms", ms);
    bool init = p->initialize;
    pending_fail(p, ERR_TIMEOUT, msg, "timeout", -1);
    if (init)
        session_end(s, "initialize timed out");
}

/* The original bytes of msg's id (from its text when known) as a raw item, so the id goes back
 * to its sender exactly as it came. */
static cJSON *id_raw(const cJSON *msg, const char *text, size_t len)
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
static char *with_id(cJSON *msg, const char *text, size_t len, const char *id, size_t *outlen)
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

static struct pending *pending_by_client_key(struct session *s, const cJSON *id)
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
static int refuse(struct stream *st, cJSON *id, int code, const char *message, const char *type,
                  long retry_after_ms)
{
    char *e = jsonrpc_error_text(id, code, message, type, retry_after_ms);
    stream_deliver(st, e != NULL ? e : "{}", e != NULL ? strlen(e) : 2, true);
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

/* A caller that pinned a tool version (params._meta["mcpvisor/version"]) must get that version:
 * returns the manifest tool (or NULL with *unknown) when the pin does not match. */
static bool version_mismatch(const struct config_manifest *m, const cJSON *msg,
                             const char **tool_name, const char **wanted, const char **current)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(meta, VERSION_META);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "name");
    if (want == NULL || !cJSON_IsString(name))
        return false;
    const struct config_tool *t = config_tool_find(m, name->valuestring);
    *tool_name = name->valuestring;
    *current = t != NULL ? t->version : NULL;
    *wanted = cJSON_IsString(want) ? want->valuestring : "(not a string)";
    return *current == NULL || !cJSON_IsString(want) || strcmp(*current, want->valuestring) != 0;
}

/* A typed refusal about one tool: data.tool, and one more data member when `value` is given. */
static int refuse_tool(struct stream *st, const cJSON *id, int code, const char *message,
                       const char *type, const char *tool, const char *key, const char *value)
{
    cJSON *e = jsonrpc_error_new(id, code, message, type, -1);
    cJSON *data =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "error"), "data");
    cJSON_AddStringToObject(data, "tool", tool);
    if (value != NULL)
        cJSON_AddStringToObject(data, key, value);
    char *et = e != NULL ? jsonrpc_print(e) : NULL;
    cJSON_Delete(e);
    stream_deliver(st, et != NULL ? et : "{}", et != NULL ? strlen(et) : 2, true);
    free(et);
    return -1;
}

static int client_request(struct session *s, cJSON *msg, struct stream *st, const char *text,
                          size_t len, const struct principal *caller)
{
    const struct config_limits *lim = &s->f->cfg->limits;
    const char *method = jsonrpc_method(msg);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    struct pending *p = NULL;
    int rc = -1;

    st->waiting++;
    if (s->f->draining) {
        rc = refuse(st, (cJSON *)id, ERR_SERVER_UNAVAILABLE,
                    "draining: the server is stopping; retry on a new session",
                    "server_unavailable", 1000);
        goto out;
    }
    const char *tool_name = NULL, *wanted = NULL, *current = NULL;
    const struct config_tool *denied = auth_tool_forbidden(s->m, caller, msg, &tool_name);
    if (denied != NULL) {
        char scopes[512], why[768];
        auth_scope_string(s->m, denied, scopes, sizeof(scopes));
        snprintf(why, sizeof(why), "forbidden: tool %s needs scope %s", tool_name, scopes);
        log_info("tool_forbidden session=%.8s server=%s tool=%s user=%s needs=\"%s\"", s->id,
                 s->m->name, tool_name, caller->user, scopes);
        rc = refuse_tool(st, id, ERR_FORBIDDEN, why, "forbidden", tool_name, "required_scope",
                         scopes);
        goto out;
    }
    if (method != NULL && strcmp(method, "tools/call") == 0 &&
        version_mismatch(s->m, msg, &tool_name, &wanted, &current)) {
        char why[512];
        snprintf(why, sizeof(why), "version mismatch: tool %s is at version %s, not %s", tool_name,
                 current != NULL ? current : "(none: the manifest gives it no version)", wanted);
        rc = refuse_tool(st, id, ERR_VERSION_MISMATCH, why, "version_mismatch", tool_name,
                         "tool_version", current);
        goto out;
    }
    if (pending_by_client_key(s, id) != NULL) {
        rc = refuse(st, (cJSON *)id, ERR_INVALID_REQUEST,
                    "a request with this id is already in progress", NULL, -1);
        goto out;
    }
    if (s->npending >= lim->max_pending_per_session) {
        rc = refuse(st, (cJSON *)id, ERR_QUOTA_EXCEEDED,
                    "too many requests in progress on this session "
                    "(limits.max_pending_per_session)",
                    "quota_exceeded", 1000);
        goto out;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        rc = refuse(st, (cJSON *)id, ERR_INTERNAL, "out of memory", NULL, -1);
        goto out;
    }
    p->s = s;
    p->st = st;
    p->client_id = id_raw(msg, text, len);
    p->client_key = jsonrpc_id_text(id);
    p->bid = ++s->f->next_bid;
    p->initialize = method != NULL && strcmp(method, "initialize") == 0;
    if (method != NULL && strcmp(method, "tools/list") == 0)
        p->filter_for = principal_dup(caller);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
    if (tok != NULL && (cJSON_IsString(tok) || cJSON_IsNumber(tok)))
        p->progress_token = jsonrpc_print(tok);
    p->timer = evtimer_new(s->f->base, on_pending_timeout, p);
    if (p->client_id == NULL || p->client_key == NULL || p->timer == NULL ||
        idmap_put(&s->f->pending_ids, p->bid, p) == -1) {
        if (p->timer != NULL)
            event_free(p->timer);
        cJSON_Delete(p->client_id);
        free(p->client_key);
        free(p->progress_token);
        principal_free(p->filter_for);
        free(p);
        rc = refuse(st, (cJSON *)id, ERR_INTERNAL, "out of memory", NULL, -1);
        goto out;
    }
    TAILQ_INSERT_TAIL(&s->pendings, p, link);
    s->npending++;
    npending_total++;

    char bid[24];
    size_t outlen = 0;
    snprintf(bid, sizeof(bid), "%" PRIu64, p->bid);
    char *out = with_id(msg, text, len, bid, &outlen);
    if (out == NULL) {
        pending_fail(p, ERR_INTERNAL, "out of memory", NULL, -1);
        goto out;
    }
    if (send_to_child(s, out, outlen) == -1) {
        free(out);
        if (s->child == NULL && s->spawn == NULL)
            pending_fail(p, ERR_SERVER_UNAVAILABLE, "the server is not running",
                         "server_unavailable", -1);
        else
            pending_fail(p, ERR_QUOTA_EXCEEDED,
                         "the server is not reading its input fast enough "
                         "(limits.max_child_write_bytes)",
                         "quota_exceeded", 1000);
        goto out;
    }
    free(out);
    uint32_t ms = p->initialize ? s->f->cfg->limits.spawn_timeout_ms : lim->request_timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    rc = 0;
out:
    cJSON_Delete(msg);
    return rc;
}

int session_client_message(struct session *s, cJSON *msg, int kind, struct stream *st,
                           const char *text, size_t len, const struct principal *caller)
{
    char *out = NULL;
    size_t outlen = 0;
    session_touch(s);
    if (kind == JSONRPC_REQUEST)
        return client_request(s, msg, st, text, len, caller);

    if (kind == JSONRPC_RESPONSE) {
        /* The client answers a request the child made: give the child its own id back. */
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
        struct srvreq *r = NULL;
        if (cJSON_IsNumber(id) && id->valuedouble >= 1)
            r = idmap_del(&s->srvreqs, (uint64_t)id->valuedouble);
        if (r == NULL) {
            log_warn("client_response_unknown session=%.8s note=\"no such server request\"", s->id);
            cJSON_Delete(msg);
            return 0;
        }
        out = with_id(msg, text, len, r->child_id->valuestring, &outlen);
        srvreq_free(r);
    } else if (kind == JSONRPC_NOTIFICATION) {
        const char *method = jsonrpc_method(msg);
        if (method != NULL && strcmp(method, "notifications/cancelled") == 0) {
            /* Rare: re-serialised, since the id to rewrite is nested in params. */
            cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
            cJSON *rid = cJSON_GetObjectItemCaseSensitive(params, "requestId");
            struct pending *p = rid != NULL ? pending_by_client_key(s, rid) : NULL;
            if (p == NULL) {
                cJSON_Delete(msg); /* nothing of ours to cancel */
                return 0;
            }
            cJSON_ReplaceItemInObjectCaseSensitive(params, "requestId",
                                                   cJSON_CreateNumber((double)p->bid));
            pending_fail(p, ERR_CANCELLED, "request cancelled by the client", NULL, -1);
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
    cJSON_Delete(msg);
    if (out == NULL)
        return -1;
    if (send_to_child(s, out, outlen) == -1)
        log_warn("client_message_dropped session=%.8s reason=child_input_full", s->id);
    free(out);
    return 0;
}

/* ---- child → client ---------------------------------------------------------------------- */

static struct stream *newest_pending_stream(struct session *s)
{
    struct pending *p = TAILQ_LAST(&s->pendings, pending_list);
    return p != NULL ? p->st : NULL;
}

static bool version_supported(const char *v)
{
    for (size_t i = 0; i < sizeof(supported_versions) / sizeof(supported_versions[0]); i++) {
        if (strcmp(v, supported_versions[i]) == 0)
            return true;
    }
    return false;
}

static void child_response(struct session *s, cJSON *msg, const char *line, size_t len)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    struct pending *p = NULL;
    if (cJSON_IsNumber(id) && id->valuedouble >= 1)
        p = idmap_get(&s->f->pending_ids, (uint64_t)id->valuedouble);
    if (p == NULL || p->s != s) {
        log_debug("child_response_dropped session=%.8s note=\"late or unknown id\"", s->id);
        cJSON_Delete(msg);
        return;
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
                pending_fail(p, ERR_INVALID_RESULT,
                             "the server negotiated a protocol version mcpvisor does not serve",
                             "invalid_result", -1);
                session_end(s, "server negotiated an unsupported protocol version");
                return;
            }
            snprintf(s->proto, sizeof(s->proto), "%s", pv->valuestring);
            s->ready = true;
            log_info("session_ready session=%.8s server=%s tenant=%s user=%s protocol=%s", s->id,
                     s->m->name, s->t->name, s->principal->user, s->proto);
        }
    }
    struct stream *st = p->st;
    bool failed_init = p->initialize && !s->ready;
    size_t outlen = 0;
    if (p->filter_for != NULL) {
        cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
        size_t changed = auth_filter_tools(s->m, p->filter_for, result);
        changed += annotate_versions(s->m, result);
        if (changed > 0)
            line = NULL; /* changed: print it */
    }
    char *text = with_id(msg, line, len, p->client_id->valuestring, &outlen);
    cJSON_Delete(msg);
    pending_free(p);
    if (text != NULL) {
        stream_deliver(st, text, outlen, true);
        free(text);
    }
    if (failed_init)
        session_end(s, "initialize failed");
}

static void child_request_to_client(struct session *s, cJSON *msg, const char *line, size_t len)
{
    struct stream *st = newest_pending_stream(s);
    if (st == NULL)
        st = s->get_stream;
    cJSON *child_id = id_raw(msg, line, len);
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
            child_write(s->child, e, strlen(e));
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
    char rid[24];
    size_t outlen = 0;
    snprintf(rid, sizeof(rid), "%" PRIu64, r->id);
    char *text = with_id(msg, line, len, rid, &outlen);
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
        struct pending *p;
        TAILQ_FOREACH(p, &s->pendings, link)
        {
            if (t != NULL && p->progress_token != NULL && strcmp(t, p->progress_token) == 0) {
                st = p->st;
                break;
            }
        }
        free(t);
    } else if (strcmp(method, "notifications/message") == 0) {
        st = newest_pending_stream(s);
    }
    if (st == NULL)
        st = s->get_stream;
    if (st == NULL) {
        log_debug("child_notification_dropped session=%.8s method=%s note=\"no stream open\"",
                  s->id, method);
        cJSON_Delete(msg);
        return;
    }
    cJSON_Delete(msg);
    stream_deliver(st, line, len, false); /* forwarded as the child wrote it */
}

static void on_child_message(void *owner, cJSON *msg, enum jsonrpc_kind kind, const char *line,
                             size_t len)
{
    struct session *s = owner;
    if (s->closing) {
        cJSON_Delete(msg);
        return;
    }
    if (kind == JSONRPC_RESPONSE)
        child_response(s, msg, line, len);
    else if (kind == JSONRPC_REQUEST)
        child_request_to_client(s, msg, line, len);
    else
        child_notification(s, msg, line, len);
}

static void on_child_gone(void *owner, const char *why)
{
    struct session *s = owner;
    if (s->closing)
        return; /* we killed it ourselves while ending the session */
    log_info("session_child_gone session=%.8s server=%s tenant=%s reason=\"%s\"", s->id, s->m->name,
             s->t->name, why);
    session_end(s, why);
}

static const struct child_ops session_child_ops = {on_child_message, on_child_gone};

static void on_spawned(void *arg, pid_t pid, const int fds[3], const char *step, int err)
{
    struct session *s = arg;
    s->spawn = NULL;
    if (pid == -1) {
        char why[128];
        snprintf(why, sizeof(why), "the server failed to start (step %s: %s)", step, strerror(err));
        session_end(s, why);
        return;
    }
    s->child = child_new(s->f, pid, fds, s->m->name, s->t->name, &session_child_ops, s);
    if (s->child == NULL) {
        session_end(s, "out of memory");
        return;
    }
    for (size_t i = 0; i < s->nprespawn; i++) {
        if (child_write(s->child, s->prespawn[i], strlen(s->prespawn[i])) == -1)
            log_warn("prespawn_dropped session=%.8s", s->id);
        free(s->prespawn[i]);
    }
    s->nprespawn = 0;
}

/* ---- life cycle -------------------------------------------------------------------------- */

/* The credential that created the session expired: its open streams end with it (requests
 * need a fresh token anyway: every one is authenticated). */
static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    log_info("session_credential_expired session=%.8s user=%s", s->id, s->principal->user);
    if (s->legacy_sse) {
        session_end(s, "the credential expired");
        return;
    }
    if (s->get_stream != NULL && s->get_stream->req != NULL) {
        struct stream *st = s->get_stream;
        http_conn_bind(s->f, st->req, NULL);
        evhttp_send_reply_end(st->req);
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t now = ts.tv_sec;
    struct timeval tv = {.tv_sec = p->exp > now ? (time_t)(p->exp - now) : 0};
    evtimer_add(s->expiry_timer, &tv);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    if (s->npending > 0) {
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
    if (s->principal == NULL) {
        free(s);
        return NULL;
    }
    s->legacy_sse = legacy_sse;
    TAILQ_INIT(&s->streams);
    TAILQ_INIT(&s->pendings);
    idmap_init(&s->srvreqs);
    do {
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            goto fail;
        for (size_t i = 0; i < sizeof(rnd); i++)
            snprintf(s->id + 2 * i, 3, "%02x", rnd[i]);
    } while (idmap_get(&by_key, id_key(s->id)) != NULL);
    if (sse_ring_init(&s->replay, f->cfg->limits.sse_replay_events, SESSION_REPLAY_MAX_BYTES) == -1)
        goto fail;
    s->idle_timer = evtimer_new(f->base, on_idle, s);
    if (s->idle_timer == NULL || idmap_put(&by_key, id_key(s->id), s) == -1)
        goto fail;
    TAILQ_INSERT_TAIL(&all_sessions, s, link);
    nsessions++;
    session_touch(s);
    s->spawn = front_spawn(f, m->name, t->name, on_spawned, s);
    if (s->spawn == NULL) {
        session_end(s, "cannot ask the spawner");
        return NULL;
    }
    log_info("session_start session=%.8s server=%s tenant=%s user=%s agent=%s transport=%s", s->id,
             m->name, t->name, p->user, p->agent != NULL ? p->agent : "-",
             legacy_sse ? "sse" : "streamable");
    return s;
fail:
    if (s->idle_timer != NULL)
        event_free(s->idle_timer);
    sse_ring_free(&s->replay);
    principal_free(s->principal);
    free(s);
    return NULL;
}

static void session_release(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    child_free(s->child);
    s->child = NULL;
    sse_ring_free(&s->replay);
    idmap_clear(&s->srvreqs, srvreq_free);
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
    evtimer_del(s->idle_timer);
    log_info("session_end session=%.8s server=%s tenant=%s reason=\"%s\"", s->id, s->m->name,
             s->t->name, why);

    char msg[192];
    snprintf(msg, sizeof(msg), "session ended: %s", why);
    struct pending *p;
    while ((p = TAILQ_FIRST(&s->pendings)) != NULL)
        pending_fail(p, ERR_SERVER_UNAVAILABLE, msg, "server_unavailable", -1);
    struct stream *st;
    while ((st = TAILQ_FIRST(&s->streams)) != NULL)
        stream_free(st);
    for (size_t i = 0; i < s->nprespawn; i++)
        free(s->prespawn[i]);
    s->nprespawn = 0;
    if (s->spawn != NULL) {
        front_spawn_cancel(s->f, s->spawn);
        s->spawn = NULL;
    }
    /* Let it go as the stdio transport asks: stdin closed, then a kill after a grace period
     * (child_free). A child that misbehaved was already killed (child_kill). */
    if (s->child != NULL)
        child_retire(s->child);
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
}
