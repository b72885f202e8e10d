/*
 * http.c — every HTTP request enters here: routing, the request checks, and the HTTP face of
 * both MCP transports. Owns no session state (session.c does) and no sockets (httpd.c does);
 * never touches a child.
 *
 * Checks run in the order of DESIGN.md's request path, cheapest and least revealing first:
 * route, Host and Origin (DNS rebinding, CSRF), credentials (401 before anything about servers
 * is revealed), server and tenant, then the transport.
 *
 * Accepts: Streamable HTTP (2025-03-26, 2025-06-18, 2025-11-25) at /servers/{s}/mcp, HTTP+SSE
 * (2024-11-05) at /servers/{s}/sse and /servers/{s}/messages, /healthz. Refuses a stateless
 * 2026-07-28 request with -32022 and the versions it can use.
 */
#include "http.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>

#include "auth.h"
#include "errors.h"
#include "frontenv.h"
#include "httpd.h"
#include "jose.h"
#include "jsonrpc.h"
#include "jwks.h"
#include "log.h"
#include "quota.h"
#include "session.h"
#include "sse.h"
#include "util.h"

#define MODERN_VERSION_KEY "io.modelcontextprotocol/protocolVersion"

/* 2024-11-05 predates Streamable HTTP, but a child that only speaks it still serves a client
 * that asked for a newer revision: its sessions carry that version in the header. */
static const char *const streamable_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                                  "2024-11-05"};

struct http_listener {
    struct front *f;
    bool admin;
    SSL_CTX *ssl_ctx; /* HTTPS listeners; swapped on reload */
};

/* ---- replies --------------------------------------------------------------------------- */

static void add_session_header(struct hreq *req, const struct session *s)
{
    if (s != NULL && !s->legacy_sse)
        hreq_add_header(req, "Mcp-Session-Id", s->id);
}

static void http_reply_json(struct hreq *req, int status, const char *json, size_t len,
                            const struct session *s)
{
    hreq_add_header(req, "Content-Type", "application/json");
    hreq_add_header(req, "Cache-Control", "no-store");
    add_session_header(req, s);
    hreq_reply(req, status, json, len);
}

static void http_reply_error(struct hreq *req, int status, int code, const char *message)
{
    char *text = jsonrpc_error_text(NULL, code, message, NULL, -1);
    if (text == NULL) {
        hreq_reply(req, 500, NULL, 0);
        return;
    }
    http_reply_json(req, status, text, strlen(text), NULL);
    free(text);
}

static void reply_cjson(struct hreq *req, int status, cJSON *msg)
{
    char *text = msg != NULL ? jsonrpc_print(msg) : NULL;
    cJSON_Delete(msg);
    if (text == NULL) {
        hreq_reply(req, 500, NULL, 0);
        return;
    }
    http_reply_json(req, status, text, strlen(text), NULL);
    free(text);
}

static void http_start_sse(struct hreq *req, const struct session *s)
{
    hreq_add_header(req, "Content-Type", "text/event-stream");
    hreq_add_header(req, "Cache-Control", "no-cache, no-transform");
    hreq_add_header(req, "X-Accel-Buffering", "no");
    add_session_header(req, s);
    hreq_stream_start(req, 200);
}

/* ---- connections ------------------------------------------------------------------------ */

static void on_stream_conn_closed(struct hreq *req, void *stream)
{
    stream_detach(stream);
}

static void http_conn_bind(struct hreq *req, struct stream *st)
{
    hreq_set_closecb(req, st != NULL ? on_stream_conn_closed : NULL, st);
}

const struct session_transport http_session_transport = {
    .bind = http_conn_bind,
    .reply_json = http_reply_json,
    .reply_error = http_reply_error,
    .start_sse = http_start_sse,
};

/* ---- request checks --------------------------------------------------------------------- */

/* A Host value (or an allowed_hosts entry): uri-host [":" port]. Returns the host's length (an
 * IPv6 literal with its brackets) and sets *port (0 when none is given), or returns 0 when v is
 * not of that form. */
static size_t host_split(const char *v, long *port)
{
    size_t n;
    *port = 0;
    if (v[0] == '[') {
        const char *e = strchr(v, ']');
        n = e != NULL ? (size_t)(e - v) + 1 : 0;
    } else {
        n = strcspn(v, ":");
    }
    if (n == 0)
        return 0;
    if (v[n] == '\0')
        return n;
    const char *p = v + n + 1;
    size_t k = strlen(p);
    if (v[n] != ':' || k == 0 || k > 5 || strspn(p, "0123456789") != k)
        return 0;
    *port = strtol(p, NULL, 10);
    return *port >= 1 && *port <= 65535 ? n : 0;
}

static bool host_is(const char *host, size_t n, const char *name, size_t namelen)
{
    return n == namelen && strncasecmp(host, name, n) == 0;
}

/* The host and port of a URL ("https://h/x" → "h", 443). Returns the host's length (0: none). */
static size_t url_host(const char *url, const char **host, long *port)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return 0;
    char auth[CONFIG_PUBLIC_URL_MAX + 1];
    size_t k = strcspn(p + 3, "/?#");
    if (k == 0 || k >= sizeof(auth))
        return 0;
    memcpy(auth, p + 3, k);
    auth[k] = '\0';
    size_t n = host_split(auth, port);
    if (n > 0 && *port == 0)
        *port = strncasecmp(url, "https:", 6) == 0 ? 443 : 80;
    *host = p + 3;
    return n;
}

static bool address_loopback(const char *a)
{
    return strncmp(a, "127.", 4) == 0 || strcmp(a, "[::1]") == 0;
}

bool http_host_allowed(const struct config *cfg, const char *host, const char *local,
                       uint16_t local_port)
{
    long port;
    size_t n = host != NULL ? host_split(host, &port) : 0;
    if (n == 0)
        return false;
    /* the port the connection reached, or none */
    bool here = port == 0 || (local_port != 0 && port == local_port);
    if (here && local[0] != '\0' &&
        (host_is(host, n, local, strlen(local)) ||
         (address_loopback(local) && host_is(host, n, "localhost", 9))))
        return true;
    if (cfg->public_url != NULL) {
        const char *pub;
        long pport;
        size_t pn = url_host(cfg->public_url, &pub, &pport);
        if (pn > 0 && host_is(host, n, pub, pn) && (port == 0 || port == pport))
            return true;
    }
    for (size_t i = 0; i < cfg->nallowed_hosts; i++) {
        long eport;
        const char *e = cfg->allowed_hosts[i];
        size_t en = host_split(e, &eport);
        /* an entry with a port matches that port only; one without, the listener's */
        if (en > 0 && host_is(host, n, e, en) && (eport != 0 ? port == eport : here))
            return true;
    }
    return false;
}

/* Browsers send Origin; a page from another origin must be listed in allowed_origins. A
 * same-origin request (Origin names the very host the request was sent to, which has passed
 * host_allowed) and the public URL's own origin need no listing. */
static bool origin_allowed(const struct config *cfg, const char *origin, const char *host)
{
    if (origin == NULL)
        return true; /* not a browser: nothing to protect against here */
    for (size_t i = 0; i < cfg->nallowed_origins; i++) {
        if (strcasecmp(origin, cfg->allowed_origins[i]) == 0)
            return true;
    }
    if (cfg->public_url != NULL) {
        const char *p = strstr(cfg->public_url, "://");
        size_t n = p != NULL ? (size_t)(p + 3 - cfg->public_url) + strcspn(p + 3, "/?#") : 0;
        if (n > 0 && strlen(origin) == n && strncasecmp(origin, cfg->public_url, n) == 0)
            return true;
    }
    if (host != NULL) {
        const char *rest = NULL;
        if (strncasecmp(origin, "http://", 7) == 0)
            rest = origin + 7;
        else if (strncasecmp(origin, "https://", 8) == 0)
            rest = origin + 8;
        if (rest != NULL && strcasecmp(rest, host) == 0)
            return true;
    }
    return false;
}

static bool header_has(const char *value, const char *token)
{
    return value != NULL && strcasestr(value, token) != NULL;
}

static bool content_type_json(const char *ct)
{
    if (ct == NULL)
        return false;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static bool streamable_version_ok(const char *v)
{
    for (size_t i = 0; i < sizeof(streamable_versions) / sizeof(streamable_versions[0]); i++) {
        if (strcmp(v, streamable_versions[i]) == 0)
            return true;
    }
    return false;
}

static void reply_unsupported_version(struct hreq *req, const cJSON *id, const char *requested)
{
    cJSON *e = jsonrpc_error_new(id, ERR_UNSUPPORTED_PROTOCOL_VERSION,
                                 "Unsupported protocol version: this endpoint serves the "
                                 "session-based revisions; start with initialize",
                                 NULL, -1);
    if (e != NULL) {
        cJSON *err = cJSON_GetObjectItemCaseSensitive(e, "error");
        cJSON *data = cJSON_AddObjectToObject(err, "data");
        cJSON *sup = cJSON_AddArrayToObject(data, "supported");
        for (size_t i = 0; i < sizeof(streamable_versions) / sizeof(streamable_versions[0]); i++)
            cJSON_AddItemToArray(sup, cJSON_CreateString(streamable_versions[i]));
        cJSON_AddStringToObject(data, "requested", requested);
    }
    reply_cjson(req, 400, e);
}

/* The 2026-07-28 marker: the protocol version carried in params._meta. */
static const char *modern_version(const cJSON *msg)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, MODERN_VERSION_KEY);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

struct call {
    struct front *f;
    struct http_listener *l;
    struct hreq *req;
    struct principal *principal; /* owned by dispatch() */
    const struct config_manifest *m;
    const struct config_tenant *t;
};

/* While draining, no new session starts (requests in flight and answers to them still run). */
static bool refuse_if_draining(struct call *c)
{
    if (!c->f->draining)
        return false;
    hreq_add_header(c->req, "Retry-After", "1");
    http_reply_error(c->req, 503, ERR_SERVER_UNAVAILABLE, "draining: the server is stopping");
    return true;
}

/* A new session's admission: the front's and the tenant's ceilings (session_admit). */
static bool refuse_if_full(struct call *c)
{
    struct session_refusal why;
    if (session_admit(c->f, c->m, c->t, c->principal, &why) == 0)
        return false;
    char retry[24];
    snprintf(retry, sizeof(retry), "%ld", why.retry_after_s);
    hreq_add_header(c->req, "Retry-After", retry);
    log_info("session_refused tenant=%s server=%s status=%d why=\"%s\"", c->t->name, c->m->name,
             why.status, why.message);
    bool mine = why.status == 429; /* the tenant's own ceiling, not the front's */
    char *text = jsonrpc_error_text(NULL, mine ? ERR_QUOTA_EXCEEDED : ERR_SERVER_UNAVAILABLE,
                                    why.message, mine ? "quota_exceeded" : "server_unavailable",
                                    why.retry_after_s * 1000);
    if (text == NULL) {
        hreq_reply(c->req, why.status, NULL, 0);
        return true;
    }
    http_reply_json(c->req, why.status, text, strlen(text), NULL);
    free(text);
    return true;
}

static void add_challenge(const struct http_listener *l, struct hreq *req, const char *server,
                          const char *error, const char *scope);

/* Finds the caller's session: NULL after answering 400/404. */
static struct session *call_session(struct call *c, const char *sid, bool legacy)
{
    struct session *s = session_find(sid);
    if (s == NULL || s->legacy_sse != legacy || s->m != c->m ||
        !auth_same_principal(s->principal, c->principal)) {
        /* Another principal's session is as unknown as a made-up one. */
        http_reply_error(c->req, 404, ERR_INVALID_REQUEST, "Session not found");
        return NULL;
    }
    return s;
}

/* The body's bytes, to forward with only the id spliced in; NULL when they hold a line break,
 * which must not reach a newline-delimited child (the message is then re-serialised). */
static const char *body_text(struct call *c)
{
    size_t len;
    const char *text = hreq_body(c->req, &len);
    if (memchr(text, '\n', len) != NULL || memchr(text, '\r', len) != NULL)
        return NULL;
    return text;
}

static size_t body_len(struct call *c)
{
    size_t len;
    hreq_body(c->req, &len);
    return len;
}

static cJSON *parse_body(struct call *c)
{
    size_t len;
    const char *text = hreq_body(c->req, &len); /* httpd refused bodies over the limit */
    const char *problem;
    size_t at;
    cJSON *msg = jsonrpc_parse(text, len, &problem, &at);
    if (msg == NULL && problem != NULL) {
        /* Not strict JSON (RFC 8259, I-JSON): the bytes go no further, to no parser. */
        char why[200];
        snprintf(why, sizeof(why), "Parse error: the body is not valid JSON: %s at byte %zu",
                 problem, at);
        http_reply_error(c->req, 400, ERR_PARSE, why);
    } else if (msg == NULL) {
        http_reply_error(c->req, 400, ERR_PARSE, "Parse error: the body is not valid JSON");
    } else if (problem != NULL) {
        /* What we check must be what the server reads: bytes another parser could read
         * differently are refused whole. */
        char why[160];
        snprintf(why, sizeof(why), "Invalid Request: the body holds %s", problem);
        cJSON_Delete(msg);
        msg = NULL;
        http_reply_error(c->req, 400, ERR_INVALID_REQUEST, why);
    }
    return msg;
}

static void feed_messages(struct session *s, struct stream *st, cJSON *body, const char *text,
                          size_t len, const struct principal *caller)
{
    cJSON *items = cJSON_IsArray(body) ? body : NULL;
    cJSON *msg = items != NULL ? items->child : body;
    while (msg != NULL) {
        cJSON *next = items != NULL ? msg->next : NULL;
        if (items != NULL)
            cJSON_DetachItemViaPointer(items, msg);
        int kind = jsonrpc_classify(msg);
        if (kind == JSONRPC_INVALID) {
            char *e = jsonrpc_error_text(NULL, ERR_INVALID_REQUEST,
                                         "Invalid Request: not a JSON-RPC 2.0 message", NULL, -1);
            if (e != NULL) {
                stream_answer(st, e, strlen(e));
                free(e);
            }
            cJSON_Delete(msg);
        } else {
            /* A batch element's own bytes are not known: it is re-serialised. */
            session_client_message(s, msg, kind, st, items != NULL ? NULL : text, len, caller);
        }
        msg = next;
    }
    cJSON_Delete(items);
}

static bool has_initialize(const cJSON *body)
{
    const cJSON *it;
    if (!cJSON_IsArray(body)) {
        const char *m = jsonrpc_method(body);
        return m != NULL && strcmp(m, "initialize") == 0;
    }
    cJSON_ArrayForEach(it, body)
    {
        const char *m = jsonrpc_method(it);
        if (m != NULL && strcmp(m, "initialize") == 0)
            return true;
    }
    return false;
}

static void streamable_post(struct call *c)
{
    const char *accept = hreq_header(c->req, "Accept");
    if (!header_has(accept, "application/json") || !header_has(accept, "text/event-stream")) {
        http_reply_error(c->req, 406, ERR_INVALID_REQUEST,
                         "Not Acceptable: Accept must list application/json and "
                         "text/event-stream");
        return;
    }
    if (!content_type_json(hreq_header(c->req, "Content-Type"))) {
        http_reply_error(c->req, 415, ERR_INVALID_REQUEST,
                         "Unsupported Media Type: Content-Type must be application/json");
        return;
    }
    const char *hv = hreq_header(c->req, "MCP-Protocol-Version");
    if (hv != NULL && !streamable_version_ok(hv)) {
        reply_unsupported_version(c->req, NULL, hv);
        return;
    }
    cJSON *body = parse_body(c);
    if (body == NULL)
        return;
    if (cJSON_IsArray(body) && cJSON_GetArraySize(body) == 0) {
        cJSON_Delete(body);
        http_reply_error(c->req, 400, ERR_INVALID_REQUEST, "Invalid Request: empty batch");
        return;
    }
    const char *sid = hreq_header(c->req, "Mcp-Session-Id");
    struct session *s;
    if (sid == NULL) {
        const char *mv = cJSON_IsArray(body) ? NULL : modern_version(body);
        if (!has_initialize(body) && mv != NULL) {
            reply_unsupported_version(c->req, cJSON_GetObjectItemCaseSensitive(body, "id"), mv);
            cJSON_Delete(body);
            return;
        }
        if (cJSON_IsArray(body) || jsonrpc_classify(body) != JSONRPC_REQUEST ||
            !has_initialize(body)) {
            cJSON_Delete(body);
            http_reply_error(c->req, 400, ERR_INVALID_REQUEST,
                             "Bad Request: Mcp-Session-Id header is required (start with an "
                             "initialize request)");
            return;
        }
        if (refuse_if_draining(c)) {
            cJSON_Delete(body);
            return;
        }
        if (refuse_if_full(c)) {
            cJSON_Delete(body);
            return;
        }
        s = session_new(c->f, c->m, c->t, c->principal, false);
        if (s == NULL) {
            cJSON_Delete(body);
            http_reply_error(c->req, 503, ERR_SERVER_UNAVAILABLE, "cannot start a session");
            return;
        }
    } else {
        s = call_session(c, sid, false);
        if (s == NULL) {
            cJSON_Delete(body);
            return;
        }
        if (has_initialize(body)) {
            cJSON_Delete(body);
            http_reply_error(c->req, 400, ERR_INVALID_REQUEST,
                             "Invalid Request: the session is already initialized");
            return;
        }
        if (cJSON_IsArray(body) && strcmp(s->proto, "2025-03-26") != 0) {
            cJSON_Delete(body);
            char msg[128];
            snprintf(msg, sizeof(msg),
                     "Invalid Request: JSON-RPC batches are not allowed in protocol version %s",
                     s->proto[0] != '\0' ? s->proto : "(not negotiated)");
            http_reply_error(c->req, 400, ERR_INVALID_REQUEST, msg);
            return;
        }
    }
    session_refresh_expiry(s, c->principal);
    /* An OAuth client lacking a tool's scope gets the spec's challenge, so it can step up
     * (MCP authorization, "scope challenge"); API-key callers get the typed error in-band. */
    if (!cJSON_IsArray(body) && c->principal->kind == PRINCIPAL_JWT) {
        const char *tool_name = NULL;
        const struct config_tool *denied =
            auth_tool_forbidden(c->m, c->principal, body, &tool_name);
        if (denied != NULL) {
            char scopes[512], text[768];
            auth_scope_string(c->m, denied, scopes, sizeof(scopes));
            snprintf(text, sizeof(text), "forbidden: tool %s needs scope %s", tool_name, scopes);
            char qt[LOG_QUOTED_MAX], qu[LOG_QUOTED_MAX];
            log_info("tool_forbidden session=%.8s server=%s tool=%s user=%s needs=\"%s\"", s->id,
                     c->m->name, log_quote_str(qt, sizeof(qt), tool_name),
                     log_quote_str(qu, sizeof(qu), c->principal->user), scopes);
            cJSON *e = jsonrpc_error_new(cJSON_GetObjectItemCaseSensitive(body, "id"),
                                         ERR_FORBIDDEN, text, "forbidden", -1);
            cJSON *data = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(e, "error"), "data");
            cJSON_AddStringToObject(data, "tool", tool_name);
            cJSON_AddStringToObject(data, "required_scope", scopes);
            add_challenge(c->l, c->req, c->m->name, "insufficient_scope", scopes);
            session_audit_refused(s, c->principal, body, "forbidden");
            cJSON_Delete(body);
            reply_cjson(c->req, 403, e);
            return;
        }
    }
    struct stream *st = stream_new(s, STREAM_POST, c->req);
    if (st == NULL) {
        cJSON_Delete(body);
        http_reply_error(c->req, 500, ERR_INTERNAL, "out of memory");
        return;
    }
    st->batch = cJSON_IsArray(body);
    st->guard = true;
    feed_messages(s, st, body, body_text(c), body_len(c), c->principal);
    stream_guard_release(st);
}

static void streamable_get(struct call *c)
{
    if (!header_has(hreq_header(c->req, "Accept"), "text/event-stream")) {
        http_reply_error(c->req, 406, ERR_INVALID_REQUEST,
                         "Not Acceptable: Accept must list text/event-stream");
        return;
    }
    const char *sid = hreq_header(c->req, "Mcp-Session-Id");
    if (sid == NULL) {
        http_reply_error(c->req, 400, ERR_INVALID_REQUEST,
                         "Bad Request: Mcp-Session-Id header is required");
        return;
    }
    struct session *s = call_session(c, sid, false);
    if (s == NULL)
        return;
    session_touch(s);
    session_refresh_expiry(s, c->principal);
    uint64_t sid_stream, seq;
    const char *last = hreq_header(c->req, "Last-Event-ID");
    if (last != NULL && sse_parse_id(last, &sid_stream, &seq) == 0 &&
        session_resume(s, c->req, sid_stream, seq) == 0)
        return;
    if (s->get_stream != NULL && s->get_stream->req != NULL) {
        http_reply_error(c->req, 409, ERR_INVALID_REQUEST,
                         "Conflict: this session already has an open GET stream");
        return;
    }
    struct stream *st = s->get_stream;
    if (st == NULL) {
        st = stream_new(s, STREAM_GET, c->req);
        if (st == NULL) {
            http_reply_error(c->req, 500, ERR_INTERNAL, "out of memory");
            return;
        }
        s->get_stream = st;
    } else {
        st->req = c->req;
        st->sse = false;
        http_conn_bind(c->req, st);
    }
    stream_start_sse(st);
}

static void streamable_delete(struct call *c)
{
    const char *sid = hreq_header(c->req, "Mcp-Session-Id");
    if (sid == NULL) {
        http_reply_error(c->req, 400, ERR_INVALID_REQUEST,
                         "Bad Request: Mcp-Session-Id header is required");
        return;
    }
    struct session *s = call_session(c, sid, false);
    if (s == NULL)
        return;
    session_end(s, "client ended the session");
    hreq_reply(c->req, 200, NULL, 0);
}

static void legacy_sse(struct call *c)
{
    const char *accept = hreq_header(c->req, "Accept");
    if (accept != NULL && !header_has(accept, "text/event-stream") && !header_has(accept, "*/*")) {
        http_reply_error(c->req, 406, ERR_INVALID_REQUEST,
                         "Not Acceptable: Accept must list text/event-stream");
        return;
    }
    if (refuse_if_draining(c))
        return;
    if (refuse_if_full(c))
        return;
    struct session *s = session_new(c->f, c->m, c->t, c->principal, true);
    if (s != NULL)
        session_refresh_expiry(s, c->principal);
    if (s == NULL) {
        http_reply_error(c->req, 503, ERR_SERVER_UNAVAILABLE, "cannot start a session");
        return;
    }
    struct stream *st = stream_new(s, STREAM_LEGACY, c->req);
    if (st == NULL) {
        session_end(s, "out of memory");
        http_reply_error(c->req, 500, ERR_INTERNAL, "out of memory");
        return;
    }
    s->get_stream = st;
    st->sse = true;
    http_start_sse(c->req, s);
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        evbuffer_add_printf(b, "event: endpoint\ndata: /servers/%s/messages?sessionId=%s\n\n",
                            c->m->name, s->id);
        hreq_stream_send(c->req, b);
        evbuffer_free(b);
    }
}

static void legacy_post(struct call *c, const char *query)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (query == NULL || evhttp_parse_query_str(query, &q) == -1) {
        evhttp_clear_headers(&q);
        http_reply_error(c->req, 400, ERR_INVALID_REQUEST, "Bad Request: sessionId is required");
        return;
    }
    const char *sid = evhttp_find_header(&q, "sessionId");
    if (sid == NULL) {
        evhttp_clear_headers(&q);
        http_reply_error(c->req, 400, ERR_INVALID_REQUEST, "Bad Request: sessionId is required");
        return;
    }
    struct session *s = call_session(c, sid, true);
    evhttp_clear_headers(&q);
    if (s == NULL)
        return;
    if (!content_type_json(hreq_header(c->req, "Content-Type"))) {
        http_reply_error(c->req, 415, ERR_INVALID_REQUEST,
                         "Unsupported Media Type: Content-Type must be application/json");
        return;
    }
    cJSON *body = parse_body(c);
    if (body == NULL)
        return;
    /* Answers travel on the session's SSE stream; the POST itself is only acknowledged. */
    feed_messages(s, s->get_stream, body, body_text(c), body_len(c), c->principal);
    hreq_reply(c->req, 202, NULL, 0);
}

/* ---- routing ---------------------------------------------------------------------------- */

static bool name_ok(const char *p, size_t n)
{
    if (n == 0 || n >= CONFIG_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* This deployment's base URL: public_url, else the address and port the connection reached.
 * Never built from request bytes: a URL in an answer is one the operator configured or the
 * kernel reported, whatever Host said. */
static void base_url(const struct http_listener *l, struct hreq *req, char *out, size_t outlen)
{
    const struct config *cfg = l->f->cfg;
    if (cfg->public_url != NULL) {
        size_t n = strlen(cfg->public_url);
        while (n > 0 && cfg->public_url[n - 1] == '/')
            n--;
        snprintf(out, outlen, "%.*s", (int)n, cfg->public_url);
        return;
    }
    uint16_t port;
    const char *local = hreq_local(req, &port);
    snprintf(out, outlen, "%s://%s:%u", l->ssl_ctx != NULL ? "https" : "http",
             local[0] != '\0' ? local : "localhost", (unsigned)port);
}

/* RFC 9728 §5.1: every challenge points at the protected resource metadata. */
static void add_challenge(const struct http_listener *l, struct hreq *req, const char *server,
                          const char *error, const char *scope)
{
    char base[CONFIG_PUBLIC_URL_MAX + 1], value[2048];
    base_url(l, req, base, sizeof(base));
    int n = snprintf(value, sizeof(value), "Bearer realm=\"mcpvisor\"");
    if (l->f->cfg->has_jwt && n > 0 && (size_t)n < sizeof(value))
        n += snprintf(value + n, sizeof(value) - (size_t)n,
                      ", resource_metadata=\"%s/.well-known/oauth-protected-resource%s%s%s\"", base,
                      server != NULL ? "/servers/" : "", server != NULL ? server : "",
                      server != NULL ? "/mcp" : "");
    if (error != NULL && n > 0 && (size_t)n < sizeof(value))
        n += snprintf(value + n, sizeof(value) - (size_t)n, ", error=\"%s\"", error);
    if (scope != NULL && scope[0] != '\0' && n > 0 && (size_t)n < sizeof(value))
        snprintf(value + n, sizeof(value) - (size_t)n, ", scope=\"%s\"", scope);
    hreq_add_header(req, "WWW-Authenticate", value);
}

/* An auth_failure audit record: why, from where, and which credential (by a hash prefix only;
 * a token that failed is never written down). */
static void audit_auth_failure(struct front *f, struct hreq *req, const char *server,
                               const char *reason)
{
    /* Anyone can fail to authenticate. */
    static struct front_audit_burst burst = {"\x1e"
                                             "auth_failure",
                                             0};
    cJSON *ev = front_audit_event(f, "auth_failure", NULL, server, NULL);
    if (ev == NULL)
        return;
    cJSON_AddStringToObject(ev, "reason", reason);
    cJSON_AddStringToObject(ev, "remote", hreq_peer(req));
    const char *auth = hreq_header(req, "Authorization");
    if (auth != NULL) {
        const char *cred = strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : auth;
        uint8_t md[UTIL_SHA256_LEN];
        char hex[17];
        if (util_sha256(cred, strlen(cred), md) == 0) {
            util_hex(md, 8, hex);
            cJSON_AddStringToObject(ev, "token_sha256_prefix", hex);
        }
    }
    front_audit_limited(f, &burst, ev);
}

/* limits.principal_rate: every request of one (tenant, user) draws from one bucket. Returns
 * false after answering 429 with Retry-After. */
static bool principal_admit(struct front *f, struct hreq *req, const struct principal *p)
{
    const struct config_limits *lim = &f->cfg->limits;
    if (lim->principal_rate_per_s <= 0)
        return true;
    char key[2 * 256 + 2];
    long retry = -1;
    snprintf(key, sizeof(key), "%s\x1f%s", p->tenant, p->user);
    enum quota_verdict v = quota_admit_key(f->quotas, key, lim->principal_rate_per_s,
                                           lim->principal_burst, util_mono_ms(), &retry);
    if (v == QUOTA_OK)
        return true;
    long secs = retry > 0 ? (retry + 999) / 1000 : 1;
    char hdr[24], msg[256];
    snprintf(hdr, sizeof(hdr), "%ld", secs);
    hreq_add_header(req, "Retry-After", hdr);
    snprintf(msg, sizeof(msg),
             "Too Many Requests: %s for user %s of tenant %s (limits.principal_rate); retry after "
             "%ld s",
             quota_verdict_text(v), p->user, p->tenant, secs);
    char qt[LOG_QUOTED_MAX], qu[LOG_QUOTED_MAX]; /* not yet checked against the tenants */
    log_info("principal_rate_refused tenant=%s user=%s retry_after_ms=%ld",
             log_quote_str(qt, sizeof(qt), p->tenant), log_quote_str(qu, sizeof(qu), p->user),
             retry);
    cJSON *ev = front_audit_event(f, "quota_refused", p, NULL, NULL);
    if (ev != NULL) {
        cJSON_AddStringToObject(ev, "reason", "principal request ceiling");
        cJSON_AddNumberToObject(ev, "retry_after_ms", (double)retry);
        front_audit_limited(f, &front_quota_refused_burst, ev);
    }
    char *text = jsonrpc_error_text(NULL, ERR_QUOTA_EXCEEDED, msg, "quota_exceeded", retry);
    if (text == NULL) {
        hreq_reply(req, 429, NULL, 0);
        return false;
    }
    http_reply_json(req, 429, text, strlen(text), NULL);
    free(text);
    return false;
}

static void reply_unauthorized(const struct http_listener *l, struct hreq *req, const char *server,
                               enum auth_result r, const char *why)
{
    char msg[160];
    add_challenge(l, req, server, r == AUTH_INVALID ? "invalid_token" : NULL, NULL);
    if (r == AUTH_INVALID)
        snprintf(msg, sizeof(msg), "Unauthorized: the credential is not valid (%s)", why);
    else
        snprintf(msg, sizeof(msg), "Unauthorized: send Authorization: Bearer <token>");
    http_reply_error(req, 401, ERR_INVALID_REQUEST, msg);
}

/* RFC 9728 protected resource metadata, for mcpvisor as a whole or one server's endpoint. */
static void reply_resource_metadata(const struct http_listener *l, struct hreq *req,
                                    const struct config_manifest *m)
{
    const struct config *cfg = l->f->cfg;
    char resource[2048 + 96], scopes[4096];
    size_t n = strlen(cfg->jwt_audience);
    while (n > 0 && cfg->jwt_audience[n - 1] == '/')
        n--;
    if (m != NULL)
        snprintf(resource, sizeof(resource), "%.*s/servers/%s/mcp", (int)n, cfg->jwt_audience,
                 m->name);
    else
        snprintf(resource, sizeof(resource), "%s", cfg->jwt_audience);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "resource", resource);
    cJSON *as = cJSON_AddArrayToObject(doc, "authorization_servers");
    for (size_t i = 0; i < cfg->njwt_authorization_servers; i++)
        cJSON_AddItemToArray(as, cJSON_CreateString(cfg->jwt_authorization_servers[i]));
    cJSON *sc = cJSON_AddArrayToObject(doc, "scopes_supported");
    for (size_t i = 0; i < cfg->nmanifests; i++) {
        if (m != NULL && &cfg->manifests[i] != m)
            continue;
        auth_scope_string(&cfg->manifests[i], NULL, scopes, sizeof(scopes));
        for (char *tok = scopes; *tok != '\0';) {
            size_t k = strcspn(tok, " ");
            char one[JOSE_CLAIM_MAX];
            snprintf(one, sizeof(one), "%.*s", (int)k, tok);
            bool seen = false;
            const cJSON *it;
            cJSON_ArrayForEach(it, sc)
            {
                if (strcmp(it->valuestring, one) == 0)
                    seen = true;
            }
            if (!seen && one[0] != '\0')
                cJSON_AddItemToArray(sc, cJSON_CreateString(one));
            tok += k;
            while (*tok == ' ')
                tok++;
        }
    }
    cJSON *bm = cJSON_AddArrayToObject(doc, "bearer_methods_supported");
    cJSON_AddItemToArray(bm, cJSON_CreateString("header"));
    cJSON_AddStringToObject(doc, "resource_name", m != NULL ? m->name : "mcpvisor");
    char *text = jsonrpc_print(doc);
    cJSON_Delete(doc);
    if (text == NULL) {
        http_reply_error(req, 500, ERR_INTERNAL, "out of memory");
        return;
    }
    http_reply_json(req, 200, text, strlen(text), NULL);
    free(text);
}

#define WELL_KNOWN_PRM "/.well-known/oauth-protected-resource"

struct parked {
    struct hreq *req;
    struct http_listener *l;
};

static void dispatch(struct hreq *req, struct http_listener *l, bool retried);

static void on_jwks_refreshed(void *arg)
{
    struct parked *pk = arg;
    struct hreq *req = pk->req;
    struct http_listener *l = pk->l;
    free(pk);
    dispatch(req, l, true);
}

static void dispatch(struct hreq *req, struct http_listener *l, bool retried)
{
    struct front *f = l->f;
    const struct config *cfg = f->cfg;
    enum hmethod method = hreq_method(req);
    const char *path = hreq_path(req);
    const char *host = hreq_header(req, "Host");
    uint16_t local_port;
    const char *local = hreq_local(req, &local_port);
    if (host == NULL) { /* HTTP/1.0 may omit it; httpd refuses an HTTP/1.1 request without */
        http_reply_error(req, 400, ERR_INVALID_REQUEST, "Bad Request: the Host header is required");
        return;
    }
    /* DNS rebinding, and a request a proxy meant for another server (RFC 9110 §15.5.20) */
    if (!http_host_allowed(cfg, host, local, local_port)) {
        log_debug("host_refused peer=%s", hreq_peer(req));
        http_reply_error(req, 421, ERR_INVALID_REQUEST,
                         "Misdirected Request: Host does not name this server and port (add it "
                         "to allowed_hosts or set public_url)");
        return;
    }
    if (!origin_allowed(cfg, hreq_header(req, "Origin"), host)) {
        http_reply_error(req, 403, ERR_INVALID_REQUEST,
                         "Forbidden: Origin is not in allowed_origins");
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        const char ok[] = "{\"status\":\"ok\"}";
        http_reply_json(req, 200, ok, sizeof(ok) - 1, NULL);
        return;
    }
    if (!l->admin && cfg->has_jwt && strncmp(path, WELL_KNOWN_PRM, strlen(WELL_KNOWN_PRM)) == 0) {
        const char *rest = path + strlen(WELL_KNOWN_PRM);
        const struct config_manifest *pm = NULL;
        if (rest[0] != '\0') {
            char sn[CONFIG_NAME_MAX];
            size_t k = strncmp(rest, "/servers/", 9) == 0 ? strcspn(rest + 9, "/") : 0;
            if (k > 0 && k < sizeof(sn) && strcmp(rest + 9 + k, "/mcp") == 0) {
                snprintf(sn, sizeof(sn), "%.*s", (int)k, rest + 9);
                pm = config_manifest_find(cfg, sn);
            }
            if (pm == NULL) {
                http_reply_error(req, 404, ERR_INVALID_REQUEST, "Not Found");
                return;
            }
        }
        if (method != HM_GET) {
            hreq_add_header(req, "Allow", "GET");
            http_reply_error(req, 405, ERR_INVALID_REQUEST, "Method Not Allowed");
            return;
        }
        reply_resource_metadata(l, req, pm);
        return;
    }
    if (l->admin || strncmp(path, "/servers/", 9) != 0) {
        http_reply_error(req, 404, ERR_INVALID_REQUEST, "Not Found");
        return;
    }
    const char *name = path + 9;
    const char *slash = strchr(name, '/');
    if (slash == NULL || !name_ok(name, (size_t)(slash - name))) {
        http_reply_error(req, 404, ERR_INVALID_REQUEST, "Not Found");
        return;
    }
    const char *endpoint = slash + 1;
    bool is_mcp = strcmp(endpoint, "mcp") == 0, is_sse = strcmp(endpoint, "sse") == 0,
         is_msg = strcmp(endpoint, "messages") == 0;
    if (!is_mcp && !is_sse && !is_msg) {
        http_reply_error(req, 404, ERR_INVALID_REQUEST, "Not Found");
        return;
    }
    char sname[CONFIG_NAME_MAX];
    snprintf(sname, sizeof(sname), "%.*s", (int)(slash - name), name);

    struct call c = {.f = f, .l = l, .req = req};
    char why[64];
    enum auth_result ar = auth_authenticate(cfg, f->jwks, hreq_header(req, "Authorization"), sname,
                                            util_wall_s(), &c.principal, why, sizeof(why));
    if (ar == AUTH_RETRY && !retried) {
        /* A key we have not seen: wait for one JWKS refresh, then try again. */
        struct parked *pk = calloc(1, sizeof(*pk));
        if (pk != NULL) {
            pk->req = req;
            pk->l = l;
            if (jwks_refresh(f->jwks, on_jwks_refreshed, pk) == 0)
                return;
            free(pk);
        }
    }
    if (ar != AUTH_OK) {
        if (ar == AUTH_RETRY)
            ar = AUTH_INVALID;
        /* The token itself is never logged: its hash prefix would be, were it to verify. */
        log_info("auth_failed reason=%s server=%s endpoint=%s", why, sname, endpoint);
        audit_auth_failure(f, req, sname, ar == AUTH_MISSING ? "missing credential" : why);
        reply_unauthorized(l, req, sname, ar, why);
        return;
    }
    if (!principal_admit(f, req, c.principal))
        goto out;
    c.m = config_manifest_find(cfg, sname);
    if (c.m == NULL) {
        http_reply_error(req, 404, ERR_INVALID_REQUEST, "Not Found: no such server");
        goto out;
    }
    c.t = config_tenant_find(cfg, c.principal->tenant);
    if (c.t == NULL || !config_tenant_allows(c.t, c.m->name)) {
        http_reply_error(req, 403, ERR_FORBIDDEN, "Forbidden: your tenant may not use this server");
        goto out;
    }

    if (is_mcp && method == HM_POST)
        streamable_post(&c);
    else if (is_mcp && method == HM_GET)
        streamable_get(&c);
    else if (is_mcp && method == HM_DELETE)
        streamable_delete(&c);
    else if (is_sse && method == HM_GET)
        legacy_sse(&c);
    else if (is_msg && method == HM_POST)
        legacy_post(&c, hreq_query(req));
    else {
        hreq_add_header(req, "Allow", is_mcp ? "GET, POST, DELETE" : is_sse ? "GET" : "POST");
        http_reply_error(req, 405, ERR_INVALID_REQUEST, "Method Not Allowed");
    }
out:
    principal_free(c.principal);
}

void http_handle(struct hreq *req, void *arg)
{
    dispatch(req, arg, false);
}

struct ssl_st *http_listener_new_ssl(void *arg)
{
    struct http_listener *l = arg;
    return l->ssl_ctx != NULL ? SSL_new(l->ssl_ctx) : NULL;
}

void http_listener_set_tls(struct http_listener *l, struct ssl_ctx_st *ctx)
{
    struct ssl_ctx_st *old = l->ssl_ctx;
    l->ssl_ctx = ctx; /* connections already open keep theirs; new ones use this one */
    if (old != NULL)
        SSL_CTX_free(old);
}

void http_listener_free(struct http_listener *l)
{
    if (l != NULL && l->ssl_ctx != NULL)
        SSL_CTX_free(l->ssl_ctx);
    free(l);
}

struct http_listener *http_listener_new(struct front *f, bool admin)
{
    struct http_listener *l = calloc(1, sizeof(*l));
    if (l != NULL) {
        l->f = f;
        l->admin = admin;
    }
    return l;
}
