/*
 * httpd.c — the HTTP/1.1 server under the front (see httpd.h for why it is ours).
 *
 * A connection is in one of four states: HEAD (waiting for or reading a request head), BODY
 * (reading its body), BUSY (the handler has the request; a pipelined next request waits in the
 * input buffer, which stops growing at the head limit) and LINGER (answer flushed, write side
 * shut, unread input discarded for a moment so a client still sending reads the answer instead
 * of a reset). Each state has one absolute deadline; bytes arriving never extend it.
 *
 * Invariants: every refusal is a JSON-RPC error body with a status; no request reaches the
 * handler unless its head parsed strictly (RFC 9112) and its body is complete; a connection is
 * freed only from its own libevent callbacks, never inside an hreq_* call, so a handler may
 * finish or drop requests at any time. Never blocks; never logs a header value.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "idmap.h"
#include "jsonrpc.h"
#include "log.h"

#define HTTPD_LINE_MAX        4096    /* a chunk-size line or one trailer field */
#define HTTPD_LINGER_MS       2000    /* discarding unread input after a closing answer */
#define HTTPD_LINGER_BYTES    1048576 /* ... or this much of it */
#define HTTPD_REFUSING_MAX    64      /* connections over a ceiling kept only to be told 503 */
#define HTTPD_REFUSING_MS     2000    /* ... and their deadline for a request head */
#define HTTPD_WRITE_TIMEOUT_S 60      /* an answer the client takes nothing of for this long */
#define HTTPD_ACCEPT_PAUSE_MS 250     /* listeners rest this long when descriptors run out */
#define HTTPD_LOG_PER_S       10      /* refusal log lines per second; the rest are counted */

enum cstate { C_HEAD, C_BODY, C_BUSY, C_LINGER };

struct hlistener {
    struct httpd *d;
    struct evconnlistener *el;
    httpd_handler handler;
    httpd_new_ssl new_ssl;
    void *arg;
    uint32_t max_conns; /* 0: only the global ceiling */
    size_t nconns;      /* admitted on this listener */
};

struct hconn;

struct hreq {
    struct hconn *c; /* NULL once the connection ended */
    char *head;      /* the head's bytes, split in place by httpd_parse_head */
    struct hhead h;
    struct evbuffer *body;
    size_t body_len;
    uint64_t chunk_left; /* chunked: data bytes left in the current chunk */
    int chunk_state;     /* CH_* */
    size_t trailer_bytes;
    struct evbuffer *out_headers; /* "Name: value\r\n" lines for the answer */
    bool streaming;
    bool finished_head; /* the answer's head was written */
    hreq_close_cb closecb;
    void *closearg;
    struct httpd_account *acct[2];
    size_t acct_seen; /* the connection's untaken bytes last counted in acct */
};

enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };

struct hconn {
    TAILQ_ENTRY(hconn) link;
    struct httpd *d;
    struct hlistener *l;
    struct bufferevent *bev;
    SSL *ssl;
    evutil_socket_t fd;
    uint64_t addr_key;
    size_t out_seen; /* its output buffer's length when last looked at (d->out_bytes) */
    char peer[INET6_ADDRSTRLEN];
    char local[INET6_ADDRSTRLEN + 2]; /* the address the client reached, IPv6 in brackets */
    uint16_t local_port;
    enum cstate state;
    bool refusing; /* over a ceiling: its first request is answered 503 */
    bool started;  /* bytes of the current head have arrived */
    bool closing;  /* close once the answer is flushed */
    bool aborting; /* close at once, without a clean TLS close (an answer cut short) */
    bool freeing;
    unsigned served; /* requests answered */
    size_t scanned;  /* head bytes already checked */
    size_t lingered;
    struct hreq *req; /* being read or handled; NULL between requests */
    struct event *timer, *kick;
};

TAILQ_HEAD(hconn_list, hconn);

struct httpd {
    struct event_base *base;
    struct httpd_limits lim;
    struct hlistener *listeners[16];
    size_t nlisteners;
    struct event *resume; /* re-enables listeners paused on EMFILE */
    struct hconn_list conns;
    size_t nconns;         /* admitted */
    size_t out_bytes;      /* sum of every connection's out_seen */
    size_t nrefusing;      /* kept only to be refused */
    struct idmap per_addr; /* addr_key → count (as a pointer) */
    uint64_t accept_errors;
};

static void conn_schedule(struct hconn *c);

/* ---- small helpers ---------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* A field value's byte: VCHAR, obs-text, SP or HTAB (RFC 9110 §5.5). */
static bool is_field_char(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || (ch >= 0x21 && ch != 0x7f);
}

static void timer_arm(struct event *ev, uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
    event_add(ev, &tv);
}

static void date_header(char *out, size_t outlen)
{
    static time_t cached;
    static char text[64];
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = now;
    }
    snprintf(out, outlen, "%s", text);
}

/* Refusal log lines: a flood of bad requests must not become a flood of log lines. */
static void log_refusal(const struct hconn *c, int status, const char *why)
{
    static time_t window;
    static unsigned in_window;
    static uint64_t suppressed;
    time_t now = time(NULL);
    if (now != window) {
        window = now;
        in_window = 0;
    }
    if (++in_window > HTTPD_LOG_PER_S) {
        suppressed++;
        return;
    }
    char q[160];
    log_quote(q, sizeof(q), why, strlen(why));
    log_info("http_refused status=%d peer=%s why=%s suppressed_before=%llu", status, c->peer, q,
             (unsigned long long)suppressed);
    suppressed = 0;
}

/* ---- parsing a request head ------------------------------------------------------------- */

static const struct {
    const char *name;
    enum hmethod m;
} methods[] = {{"GET", HM_GET},       {"HEAD", HM_HEAD},       {"POST", HM_POST},  {"PUT", HM_PUT},
               {"DELETE", HM_DELETE}, {"OPTIONS", HM_OPTIONS}, {"PATCH", HM_PATCH}};

/* Fields mcpvisor reads or that decide framing: each may appear once, even twice with one value
 * (RFC 9110 §8.6 lets a recipient keep one of equal Content-Lengths; a proxy that keeps the
 * other after a rewrite is the attack, and no client needs to send two). */
static const char *const singletons[] = {
    "Host",          "Content-Length", "Transfer-Encoding", "Authorization", "Content-Type",
    "Accept",        "Origin",         "Mcp-Session-Id",    "Expect",        "MCP-Protocol-Version",
    "Last-Event-ID",
};

/* uri-host [":" port]: a reg-name, IPv4 or IP-literal, nothing that could end a quoted string,
 * start a path or carry userinfo. */
static bool host_syntax_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 255)
        return false;
    const char *port = NULL;
    if (v[0] == '[') {
        const char *e = strchr(v, ']');
        if (e == NULL || e == v + 1)
            return false;
        for (const char *p = v + 1; p < e; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
                return false;
        if (e[1] != '\0' && e[1] != ':')
            return false;
        port = e[1] == ':' ? e + 2 : NULL;
    } else {
        size_t k = strcspn(v, ":");
        if (k == 0)
            return false;
        for (size_t i = 0; i < k; i++) {
            char ch = v[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~'))
                return false;
        }
        port = v[k] == ':' ? v + k + 1 : NULL;
    }
    if (port != NULL) {
        size_t k = strlen(port);
        if (k == 0 || k > 5 || strspn(port, "0123456789") != k || strtol(port, NULL, 10) > 65535)
            return false;
    }
    return true;
}

static bool token_list_has(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (*v != '\0') {
        v += strspn(v, " \t,");
        size_t k = strcspn(v, ",");
        size_t e = k;
        while (e > 0 && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e == tl && strncasecmp(v, token, tl) == 0)
            return true;
        v += k;
    }
    return false;
}

int httpd_parse_head(char *head, size_t len, struct hhead *h, const char **why)
{
    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    if (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
        *why = "the request head does not end with an empty line";
        return 400;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)head[i];
        if (ch == '\0' || (ch == '\n' && (i == 0 || head[i - 1] != '\r')) ||
            (ch == '\r' && head[i + 1] != '\n')) {
            *why = ch == '\0' ? "a NUL byte in the request head"
                              : "a line not ended by CRLF in the request head";
            return 400;
        }
    }
    /* request-line = method SP request-target SP HTTP-version */
    char *line = head, *eol = strstr(line, "\r\n");
    *eol = '\0';
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL || sp1 == line ||
        sp2 == sp1 + 1) {
        *why = "the request line is not METHOD SP TARGET SP VERSION";
        return 400;
    }
    *sp1 = *sp2 = '\0';
    char *target = sp1 + 1, *version = sp2 + 1;
    for (char *p = line; *p != '\0'; p++)
        if (!is_tchar((unsigned char)*p)) {
            *why = "the method is not a token";
            return 400;
        }
    if (strncmp(version, "HTTP/", 5) != 0 || version[5] < '0' || version[5] > '9' ||
        version[6] != '.' || version[7] < '0' || version[7] > '9' || version[8] != '\0') {
        *why = "the request line's version is not HTTP/x.y";
        return 400;
    }
    if (version[5] != '1') {
        *why = "only HTTP/1.0 and HTTP/1.1 are served";
        return 505;
    }
    h->minor = version[7] == '0' ? 0 : 1;
    for (char *p = target; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#') {
            *why = "the request target holds a byte a URI may not";
            return 400;
        }
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(line, methods[i].name) == 0)
            h->method = methods[i].m;
    if (h->method == 0) {
        *why = "the method is not implemented";
        return 501;
    }

    /* field-line = field-name ":" OWS field-value OWS */
    for (line = eol + 2; line[0] != '\r'; line = eol + 2) {
        eol = strstr(line, "\r\n");
        *eol = '\0';
        if (line[0] == ' ' || line[0] == '\t') {
            *why = "obsolete line folding in a header field";
            return 400;
        }
        char *colon = line;
        while (is_tchar((unsigned char)*colon))
            colon++;
        if (*colon != ':' || colon == line) {
            *why = "a header field's name is not a token followed by ':'";
            return 400;
        }
        *colon = '\0';
        char *v = colon + 1;
        v += strspn(v, " \t");
        char *end = v + strlen(v);
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        for (char *p = v; *p != '\0'; p++)
            if (!is_field_char((unsigned char)*p)) {
                *why = "a control byte in a header field's value";
                return 400;
            }
        if (h->nf == HTTPD_MAX_FIELDS) {
            *why = "too many header fields";
            return 431;
        }
        for (size_t i = 0; i < sizeof(singletons) / sizeof(singletons[0]); i++) {
            if (strcasecmp(line, singletons[i]) != 0)
                continue;
            for (size_t j = 0; j < h->nf; j++)
                if (strcasecmp(h->f[j].name, line) == 0) {
                    *why = "a header field that must appear once appears twice";
                    return 400;
                }
        }
        h->f[h->nf].name = line;
        h->f[h->nf].value = v;
        h->nf++;
    }

    const char *host = NULL, *te = NULL, *cl = NULL, *expect = NULL;
    for (size_t i = 0; i < h->nf; i++) {
        const char *n = h->f[i].name, *v = h->f[i].value;
        if (strcasecmp(n, "Host") == 0)
            host = v;
        else if (strcasecmp(n, "Transfer-Encoding") == 0)
            te = v;
        else if (strcasecmp(n, "Content-Length") == 0)
            cl = v;
        else if (strcasecmp(n, "Expect") == 0)
            expect = v;
        else if (strcasecmp(n, "Connection") == 0 && token_list_has(v, "close"))
            h->close = true;
    }
    if (h->minor == 0) {
        bool ka = false;
        for (size_t i = 0; i < h->nf; i++)
            if (strcasecmp(h->f[i].name, "Connection") == 0 &&
                token_list_has(h->f[i].value, "keep-alive"))
                ka = true;
        if (!ka)
            h->close = true;
    }
    if (host == NULL && h->minor == 1) {
        *why = "the Host header is required";
        return 400;
    }
    if (host != NULL && !host_syntax_ok(host)) {
        *why = "the Host header is not a host name or address with an optional port";
        return 400;
    }
    /* origin-form, or absolute-form (RFC 9112 §3.2.2: a server must accept it) whose authority is
     * exactly Host, so the two ways of naming the target cannot disagree */
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        char *auth = strstr(target, "://") + 3;
        size_t k = strcspn(auth, "/?");
        if (host == NULL || strlen(host) != k || strncasecmp(auth, host, k) != 0) {
            *why = "the request target names another host than the Host header";
            return 400;
        }
        target = auth + k;
        if (*target != '/') {
            /* "http://h" or "http://h?q": the path is "/" */
            static char root[] = "/";
            *why = "the request target has no path";
            if (*target != '\0')
                return 400;
            target = root;
        }
    } else if (target[0] != '/') {
        *why = "the request target is not a path";
        return 400;
    }
    h->path = target;
    char *q = strchr(target, '?');
    if (q != NULL) {
        *q = '\0';
        h->query = q + 1;
    }
    if (te != NULL) {
        if (cl != NULL || h->minor == 0) {
            *why = cl != NULL ? "both Transfer-Encoding and Content-Length"
                              : "Transfer-Encoding in an HTTP/1.0 request";
            return 400;
        }
        if (strcasecmp(te, "chunked") != 0) {
            *why = "Transfer-Encoding other than chunked";
            return 501;
        }
        h->chunked = true;
    }
    if (cl != NULL) {
        size_t n = strlen(cl);
        if (n == 0 || n > 18 || strspn(cl, "0123456789") != n) {
            *why = "Content-Length is not a decimal number";
            return 400;
        }
        h->content_length = (int64_t)strtoll(cl, NULL, 10);
    }
    if (expect != NULL && h->minor == 1) { /* RFC 9110 §10.1.1: HTTP/1.0 expectations are ignored */
        if (strcasecmp(expect, "100-continue") != 0) {
            *why = "an expectation other than 100-continue";
            return 417;
        }
        h->expect_continue = true;
    }
    *why = NULL;
    return 0;
}

/* ---- answers -------------------------------------------------------------------------- */

static struct evbuffer *conn_out(const struct hconn *c)
{
    return bufferevent_get_output(c->bev);
}

/* Brings the connection's share of d->out_bytes up to date with its output buffer. */
static void out_sync(struct hconn *c)
{
    size_t now = c->bev != NULL ? evbuffer_get_length(conn_out(c)) : 0;
    c->d->out_bytes = c->d->out_bytes - c->out_seen + now;
    c->out_seen = now;
    struct hreq *r = c->req;
    if (r != NULL) {
        for (int i = 0; i < 2; i++)
            if (r->acct[i] != NULL)
                r->acct[i]->bytes = r->acct[i]->bytes - r->acct_seen + now;
        r->acct_seen = now;
    }
}

#define BODY_STREAMED (-1) /* write_head: a streamed body follows */
#define BODY_NONE     (-2) /* write_head: no body and no length (204, 304) */

/* Writes the status line and headers; length is the body's, or BODY_STREAMED or BODY_NONE. */
static void write_head(struct hreq *r, int status, long long length)
{
    struct hconn *c = r->c;
    struct evbuffer *out = conn_out(c);
    char date[64];
    date_header(date, sizeof(date));
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason_phrase(status), date);
    evbuffer_add_buffer(out, r->out_headers);
    if (length == BODY_STREAMED && r->h.minor == 0)
        c->closing = true; /* no chunked coding in HTTP/1.0: the end of the body is the close */
    if (r->h.close || c->closing || c->refusing)
        c->closing = true;
    if (c->closing)
        evbuffer_add_printf(out, "Connection: close\r\n");
    else if (r->h.minor == 0)
        evbuffer_add_printf(out, "Connection: keep-alive\r\n");
    if (length >= 0)
        evbuffer_add_printf(out, "Content-Length: %lld\r\n", length);
    else if (length == BODY_STREAMED && r->h.minor == 1)
        evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    evbuffer_add(out, "\r\n", 2);
    r->finished_head = true;
}

/* r no longer speaks for its connection's output. */
static void req_unaccount(struct hreq *r)
{
    for (int i = 0; i < 2; i++)
        if (r->acct[i] != NULL)
            r->acct[i]->bytes -= r->acct_seen;
    r->acct[0] = r->acct[1] = NULL;
    r->acct_seen = 0;
}

static void req_free(struct hreq *r)
{
    if (r == NULL)
        return;
    req_unaccount(r);
    if (r->body != NULL)
        evbuffer_free(r->body);
    if (r->out_headers != NULL)
        evbuffer_free(r->out_headers);
    free(r->head);
    free(r);
}

/* The answer is complete: the connection goes on to its next request, or closes. */
static void req_finish(struct hreq *r)
{
    struct hconn *c = r->c;
    if (c != NULL) {
        c->req = NULL;
        c->served++;
        if (!c->closing) {
            c->state = C_HEAD;
            c->started = false;
            c->scanned = 0;
            timer_arm(c->timer, c->d->lim.idle_timeout_ms);
        }
        conn_schedule(c);
    }
    req_free(r);
}

/* A refusal httpd gives on its own: a JSON-RPC error, then the connection closes. It needs no
 * request: it may come before any head parsed. */
static void conn_refuse(struct hconn *c, int status, int code, const char *message)
{
    log_refusal(c, status, message);
    char *text = jsonrpc_error_text(NULL, code, message, NULL, -1);
    size_t n = text != NULL ? strlen(text) : 0;
    char date[64];
    date_header(date, sizeof(date));
    evbuffer_add_printf(conn_out(c),
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
                        "Cache-Control: no-store\r\n%sConnection: close\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        status, reason_phrase(status), date,
                        status == 503 ? "Retry-After: 1\r\n" : "", n);
    if (n > 0)
        evbuffer_add(conn_out(c), text, n);
    free(text);
    req_free(c->req); /* never reached the handler */
    c->req = NULL;
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    c->state = C_BUSY;
    event_del(c->timer);
    conn_schedule(c);
}

/* ---- connections ------------------------------------------------------------------------ */

static void addr_count(struct httpd *d, uint64_t key, int delta)
{
    uintptr_t n = (uintptr_t)idmap_get(&d->per_addr, key);
    n = delta > 0 ? n + 1 : n - 1;
    if (n == 0)
        idmap_del(&d->per_addr, key);
    else
        idmap_put(&d->per_addr, key, (void *)n);
}

static void listeners_enable(struct httpd *d, bool on)
{
    for (size_t i = 0; i < d->nlisteners; i++) {
        if (on)
            evconnlistener_enable(d->listeners[i]->el);
        else
            evconnlistener_disable(d->listeners[i]->el);
    }
}

static void conn_free(struct hconn *c)
{
    struct httpd *d = c->d;
    if (c->freeing)
        return;
    c->freeing = true;
    struct hreq *r = c->req;
    c->req = NULL;
    if (r != NULL) {
        req_unaccount(r);
        r->c = NULL;
        if (r->closecb != NULL)
            r->closecb(r, r->closearg); /* the callee finishes or drops r */
        else if (c->state != C_BUSY)
            req_free(r); /* never reached the handler */
        /* else: the handler still holds r and finishes it later */
    }
    TAILQ_REMOVE(&d->conns, c, link);
    d->out_bytes -= c->out_seen;
    c->out_seen = 0;
    if (c->refusing) {
        d->nrefusing--;
    } else {
        d->nconns--;
        c->l->nconns--;
        addr_count(d, c->addr_key, -1);
    }
    event_free(c->timer);
    event_free(c->kick);
    bufferevent_free(c->bev); /* closes the socket; frees the SSL */
    free(c);
    if (evtimer_pending(d->resume, NULL)) {
        event_del(d->resume); /* a descriptor came free: accept again without waiting */
        listeners_enable(d, true);
    }
}

static void conn_linger(struct hconn *c)
{
    c->state = C_LINGER;
    if (c->ssl != NULL) {
        SSL_shutdown(c->ssl); /* close_notify; a client that never reads it loses nothing */
        ERR_clear_error();
    }
    shutdown(c->fd, SHUT_WR);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    timer_arm(c->timer, HTTPD_LINGER_MS);
}

static void conn_schedule(struct hconn *c)
{
    event_active(c->kick, EV_TIMEOUT, 0);
}

static uint64_t content_left(const struct hreq *r)
{
    return (uint64_t)r->h.content_length - r->body_len;
}

/* Moves body bytes from the input; returns 1 when the body is complete, 0 for more, -1 after a
 * refusal. */
static int read_body(struct hconn *c)
{
    struct hreq *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const size_t max = c->d->lim.max_body_bytes;
    if (!r->h.chunked) {
        size_t avail = evbuffer_get_length(in);
        uint64_t left = content_left(r);
        size_t n = avail < left ? avail : (size_t)left;
        evbuffer_remove_buffer(in, r->body, n);
        r->body_len += n;
        return content_left(r) == 0 ? 1 : 0;
    }
    for (;;) {
        if (r->chunk_state == CH_DATA) {
            size_t avail = evbuffer_get_length(in);
            size_t n = avail < r->chunk_left ? avail : (size_t)r->chunk_left;
            evbuffer_remove_buffer(in, r->body, n);
            r->body_len += n;
            r->chunk_left -= n;
            if (r->chunk_left > 0)
                return 0;
            r->chunk_state = CH_DATA_END;
            continue;
        }
        /* the other states read one CRLF-ended line */
        struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
        if (lf.pos == -1) {
            if (evbuffer_get_length(in) > HTTPD_LINE_MAX) {
                conn_refuse(c, 400, ERR_INVALID_REQUEST, "Bad Request: a chunk line is too long");
                return -1;
            }
            return 0;
        }
        size_t n = (size_t)lf.pos + 1;
        if (n > HTTPD_LINE_MAX) {
            conn_refuse(c, 400, ERR_INVALID_REQUEST, "Bad Request: a chunk line is too long");
            return -1;
        }
        char line[HTTPD_LINE_MAX + 1];
        evbuffer_remove(in, line, n);
        line[n] = '\0';
        if (n < 2 || line[n - 2] != '\r') {
            conn_refuse(c, 400, ERR_INVALID_REQUEST, "Bad Request: a chunk line not ended by CRLF");
            return -1;
        }
        line[n - 2] = '\0';
        /* a bare CR, NUL or other control byte: a line end or terminator to another parser */
        for (size_t i = 0; i < n - 2; i++)
            if (!is_field_char((unsigned char)line[i])) {
                conn_refuse(c, 400, ERR_INVALID_REQUEST,
                            "Bad Request: a control byte in a chunk line");
                return -1;
            }
        if (r->chunk_state == CH_DATA_END) {
            if (line[0] != '\0') {
                conn_refuse(c, 400, ERR_INVALID_REQUEST,
                            "Bad Request: chunk data longer than its size");
                return -1;
            }
            r->chunk_state = CH_SIZE;
        } else if (r->chunk_state == CH_SIZE) {
            /* chunk-size [ BWS ";" chunk-ext ]: whitespace only before an extension */
            size_t k = strspn(line, "0123456789abcdefABCDEF");
            const char *rest = line + k;
            rest += strspn(rest, " \t");
            if (k == 0 || k > 16 || (*rest != ';' && line[k] != '\0')) {
                conn_refuse(c, 400, ERR_INVALID_REQUEST,
                            "Bad Request: a chunk size is not a hexadecimal number");
                return -1;
            }
            uint64_t size = strtoull(line, NULL, 16);
            if (size > max || r->body_len + size > max) {
                conn_refuse(c, 413, ERR_INVALID_REQUEST,
                            "Content Too Large: the body is over limits.max_body_bytes");
                return -1;
            }
            r->chunk_left = size;
            r->chunk_state = size == 0 ? CH_TRAILER : CH_DATA;
        } else { /* CH_TRAILER: fields are checked and dropped; an empty line ends the body */
            if (line[0] == '\0')
                return 1;
            const char *colon = line;
            while (is_tchar((unsigned char)*colon))
                colon++;
            if (*colon != ':' || colon == line) { /* obs-fold or a name that is not a token */
                conn_refuse(c, 400, ERR_INVALID_REQUEST,
                            "Bad Request: a trailer field's name is not a token followed by ':'");
                return -1;
            }
            r->trailer_bytes += n;
            if (r->trailer_bytes > c->d->lim.max_header_bytes) {
                conn_refuse(c, 431, ERR_INVALID_REQUEST,
                            "Request Header Fields Too Large: the trailer is over "
                            "limits.max_header_bytes");
                return -1;
            }
        }
    }
}

static void dispatch(struct hconn *c)
{
    struct hreq *r = c->req;
    evbuffer_add(r->body, "", 1); /* the NUL hreq_body promises */
    c->state = C_BUSY;
    event_del(c->timer);
    if (c->refusing) {
        conn_refuse(c, 503, ERR_SERVER_UNAVAILABLE,
                    "Service Unavailable: too many connections (limits.max_connections, "
                    "limits.max_connections_per_address or the listener's max_connections); "
                    "retry later");
        return;
    }
    /* A pipelined next request may wait in the input, up to the head limit. */
    c->l->handler(r, c->l->arg);
}

/* Looks for a complete head in the input; returns 1 and sets c->req when one parsed, 0 to wait,
 * -1 after a refusal. */
static int read_head(struct hconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const size_t limit = c->d->lim.max_header_bytes;
    /* RFC 9112 §2.2: empty lines before a request line are ignored */
    while (!c->started && evbuffer_get_length(in) >= 2) {
        unsigned char two[2];
        evbuffer_copyout(in, two, 2);
        if (two[0] != '\r' || two[1] != '\n')
            break;
        evbuffer_drain(in, 2);
    }
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return 0;
    c->started = true;
    size_t n = len < limit ? len : limit;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    size_t end = 0;
    for (size_t i = c->scanned; i < n && end == 0; i++) {
        /* what can never become a valid head is refused now, not at the size limit */
        if (p[i] == '\0' || (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))) {
            conn_refuse(c, 400, ERR_INVALID_REQUEST,
                        "Bad Request: a NUL byte or a line not ended by CRLF in the request head");
            return -1;
        }
        if (p[i] == '\n' && i >= 3 && memcmp(p + i - 3, "\r\n\r\n", 4) == 0)
            end = i + 1;
    }
    if (end == 0) {
        c->scanned = n;
        if (len >= limit) {
            conn_refuse(c, 431, ERR_INVALID_REQUEST,
                        "Request Header Fields Too Large: the request head is over "
                        "limits.max_header_bytes");
            return -1;
        }
        return 0;
    }
    struct hreq *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->head = malloc(end + 1);
        r->body = evbuffer_new();
        r->out_headers = evbuffer_new();
    }
    if (r == NULL || r->head == NULL || r->body == NULL || r->out_headers == NULL) {
        req_free(r);
        conn_refuse(c, 503, ERR_SERVER_UNAVAILABLE, "Service Unavailable: out of memory");
        return -1;
    }
    evbuffer_remove(in, r->head, end);
    r->head[end] = '\0';
    r->c = c;
    c->req = r;
    c->scanned = 0;
    const char *why = NULL;
    int status = httpd_parse_head(r->head, end, &r->h, &why);
    if (status == 0 && r->h.content_length > 0 &&
        (uint64_t)r->h.content_length > c->d->lim.max_body_bytes) {
        status = 413;
        why = "the body is over limits.max_body_bytes";
    }
    if (status != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s: %s", reason_phrase(status), why);
        conn_refuse(c, status, ERR_INVALID_REQUEST, msg);
        return -1;
    }
    if (r->h.content_length < 0 && !r->h.chunked)
        r->h.content_length = 0;
    return 1;
}

static void conn_read(struct hconn *c)
{
    if (c->state == C_LINGER) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        c->lingered += evbuffer_get_length(in);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (c->lingered > HTTPD_LINGER_BYTES)
            conn_free(c);
        return;
    }
    if (c->state == C_HEAD) {
        /* Answers first: a client that pipelines without reading gets no more of them. */
        if (evbuffer_get_length(conn_out(c)) > 0)
            return; /* on_write resumes */
        bool was_started = c->started;
        int rc = read_head(c);
        /* The first request's deadline runs from accept; a later one's from its first byte. */
        if (rc == 0 && c->started && !was_started && c->served > 0)
            timer_arm(c->timer, c->d->lim.header_timeout_ms);
        if (rc != 1)
            return;
        struct hreq *r = c->req;
        if (r->h.content_length == 0 && !r->h.chunked) {
            dispatch(c);
            return;
        }
        c->state = C_BODY;
        timer_arm(c->timer, c->d->lim.body_timeout_ms);
        if (r->h.expect_continue && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            evbuffer_add_printf(conn_out(c), "HTTP/1.1 100 Continue\r\n\r\n");
    }
    if (c->state == C_BODY) {
        int rc = read_body(c);
        if (rc == 1)
            dispatch(c);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    conn_read(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    out_sync(c);
    conn_schedule(c); /* output drained: close, or read the next request */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct hconn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return; /* TLS handshake done */
    if ((what & BEV_EVENT_EOF) && c->state != C_LINGER && c->req == NULL &&
        evbuffer_get_length(conn_out(c)) > 0) {
        /* the client finished sending (a half-close): let it have the rest of its answer */
        c->closing = true;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    conn_free(c); /* EOF, error or a write that made no progress in time */
}

/* Deferred work: closing or reading on once the output has drained. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct hconn *c = arg;
    if (c->aborting) {
        conn_free(c);
        return;
    }
    if (c->state == C_LINGER || c->req != NULL)
        return;
    if (evbuffer_get_length(conn_out(c)) > 0)
        return; /* on_write calls again */
    if (c->closing) {
        conn_linger(c);
        return;
    }
    if (c->state == C_HEAD) {
        bufferevent_enable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            conn_read(c);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct hconn *c = arg;
    switch (c->state) {
    case C_HEAD:
        if (!c->started && c->req == NULL) {
            conn_free(c); /* idle between requests, or nothing ever sent: close quietly */
            return;
        }
        conn_refuse(c, 408, ERR_INVALID_REQUEST,
                    "Request Timeout: the request head did not arrive within "
                    "limits.header_timeout_ms");
        return;
    case C_BODY:
        conn_refuse(c, 408, ERR_INVALID_REQUEST,
                    "Request Timeout: the request body did not arrive within "
                    "limits.body_timeout_ms");
        return;
    case C_LINGER:
        conn_free(c);
        return;
    case C_BUSY:
        return;
    }
}

static uint64_t address_key(const struct sockaddr *sa, char *peer, size_t peerlen)
{
    peer[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, peer, (socklen_t)peerlen);
        return (1ULL << 32) | ntohl(s4->sin_addr.s_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *b = s6->sin6_addr.s6_addr;
        inet_ntop(AF_INET6, &s6->sin6_addr, peer, (socklen_t)peerlen);
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            return (1ULL << 32) |
                   ((uint64_t)b[12] << 24 | (uint64_t)b[13] << 16 | (uint64_t)b[14] << 8 | b[15]);
        uint64_t k = 0; /* one host usually holds a whole /64 */
        for (int i = 0; i < 8; i++)
            k = k << 8 | b[i];
        return k | (1ULL << 63);
    }
    snprintf(peer, peerlen, "local");
    return 0;
}

/* The address and port fd's client connected to, as a URI host: IPv6 in brackets, an IPv4-mapped
 * IPv6 address as IPv4 (a dual-stack listener reached over IPv4). "" and 0 when unknown. */
static void local_address(evutil_socket_t fd, char *out, size_t outlen, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char text[INET6_ADDRSTRLEN];
    out[0] = '\0';
    *port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        if (inet_ntop(AF_INET, &s4->sin_addr, text, sizeof(text)) != NULL) {
            snprintf(out, outlen, "%s", text);
            *port = ntohs(s4->sin_port);
        }
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            struct in_addr a4;
            memcpy(&a4, s6->sin6_addr.s6_addr + 12, sizeof(a4));
            if (inet_ntop(AF_INET, &a4, text, sizeof(text)) != NULL)
                snprintf(out, outlen, "%s", text);
        } else if (inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text)) != NULL) {
            snprintf(out, outlen, "[%s]", text);
        }
        if (out[0] != '\0')
            *port = ntohs(s6->sin6_port);
    }
}

static void on_accept(struct evconnlistener *el, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct hlistener *l = arg;
    struct httpd *d = l->d;
    char peer[INET6_ADDRSTRLEN];
    uint64_t key = address_key(sa, peer, sizeof(peer));
    uintptr_t from_addr = (uintptr_t)idmap_get(&d->per_addr, key);
    bool refusing = d->nconns >= d->lim.max_connections || from_addr >= d->lim.max_per_address ||
                    (l->max_conns != 0 && l->nconns >= l->max_conns);
    if (refusing && d->nrefusing >= HTTPD_REFUSING_MAX) {
        evutil_closesocket(fd); /* over every ceiling: not even an answer */
        return;
    }
    struct hconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    c->d = d;
    c->l = l;
    c->fd = fd;
    c->addr_key = key;
    c->refusing = refusing;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    local_address(fd, c->local, sizeof(c->local), &c->local_port);
    const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (l->new_ssl != NULL) {
        c->ssl = l->new_ssl(l->arg);
        if (c->ssl != NULL) {
            c->bev = bufferevent_openssl_socket_new(d->base, fd, c->ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    opts);
            if (c->bev == NULL)
                SSL_free(c->ssl);
            else
                bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        }
    } else {
        c->bev = bufferevent_socket_new(d->base, fd, opts);
    }
    c->timer = evtimer_new(d->base, on_timer, c);
    c->kick = event_new(d->base, -1, 0, on_kick, c);
    if (c->bev == NULL || c->timer == NULL || c->kick == NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->timer != NULL)
            event_free(c->timer);
        if (c->kick != NULL)
            event_free(c->kick);
        free(c);
        return;
    }
    TAILQ_INSERT_TAIL(&d->conns, c, link);
    if (refusing) {
        d->nrefusing++;
    } else {
        d->nconns++;
        l->nconns++;
        addr_count(d, key, +1);
    }
    c->state = C_HEAD;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    /* The input stops growing at the head limit while a request is handled. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, d->lim.max_header_bytes + 1);
    struct timeval wt = {.tv_sec = HTTPD_WRITE_TIMEOUT_S};
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* The first request's deadline runs from accept: a connection that sends nothing or drips
     * its head is closed on time whatever it does. */
    timer_arm(c->timer, refusing ? HTTPD_REFUSING_MS : d->lim.header_timeout_ms);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    listeners_enable(arg, true);
}

static void on_accept_error(struct evconnlistener *el, void *arg)
{
    struct hlistener *l = arg;
    struct httpd *d = l->d;
    int err = EVUTIL_SOCKET_ERROR();
    static time_t last_log;
    d->accept_errors++;
    time_t now = time(NULL);
    if (now - last_log >= 10) {
        log_warn("accept_failed error=\"%s\" connections=%zu pausing_ms=%d failures=%llu",
                 strerror(err), d->nconns + d->nrefusing, HTTPD_ACCEPT_PAUSE_MS,
                 (unsigned long long)d->accept_errors);
        last_log = now;
    }
    /* EMFILE, ENFILE, ENOBUFS: retrying at once would spin; rest until a descriptor frees or
     * the pause ends. */
    listeners_enable(d, false);
    timer_arm(d->resume, HTTPD_ACCEPT_PAUSE_MS);
}

/* ---- the server ------------------------------------------------------------------------- */

struct httpd *httpd_new(struct event_base *base, const struct httpd_limits *lim)
{
    struct httpd *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->base = base;
    d->lim = *lim;
    TAILQ_INIT(&d->conns);
    idmap_init(&d->per_addr);
    d->resume = evtimer_new(base, on_resume, d);
    if (d->resume == NULL) {
        free(d);
        return NULL;
    }
    return d;
}

int httpd_listen(struct httpd *d, int fd, uint32_t max_conns, httpd_handler handler,
                 httpd_new_ssl tls, void *arg)
{
    if (d->nlisteners == sizeof(d->listeners) / sizeof(d->listeners[0]))
        return -1;
    struct hlistener *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -1;
    l->d = d;
    l->handler = handler;
    l->new_ssl = tls;
    l->arg = arg;
    l->max_conns = max_conns;
    l->el = evconnlistener_new(d->base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                               0, fd);
    if (l->el == NULL) {
        free(l);
        return -1;
    }
    evconnlistener_set_error_cb(l->el, on_accept_error);
    d->listeners[d->nlisteners++] = l;
    return 0;
}

void httpd_free(struct httpd *d)
{
    if (d == NULL)
        return;
    /* Connections first: each one counts itself out of its listener. */
    struct hconn *c;
    while ((c = TAILQ_FIRST(&d->conns)) != NULL)
        conn_free(c);
    for (size_t i = 0; i < d->nlisteners; i++) {
        evconnlistener_free(d->listeners[i]->el);
        free(d->listeners[i]);
    }
    d->nlisteners = 0;
    event_free(d->resume);
    idmap_free(&d->per_addr);
    free(d);
}

size_t httpd_connections(const struct httpd *d)
{
    return d->nconns;
}

size_t httpd_output_buffered(const struct httpd *d)
{
    return d->out_bytes;
}

/* ---- requests --------------------------------------------------------------------------- */

enum hmethod hreq_method(const struct hreq *r)
{
    return r->h.method;
}

const char *hreq_path(const struct hreq *r)
{
    return r->h.path;
}

const char *hreq_query(const struct hreq *r)
{
    return r->h.query;
}

const char *hreq_header(const struct hreq *r, const char *name)
{
    for (size_t i = 0; i < r->h.nf; i++)
        if (strcasecmp(r->h.f[i].name, name) == 0)
            return r->h.f[i].value;
    return NULL;
}

const char *hreq_body(const struct hreq *r, size_t *len)
{
    *len = r->body_len;
    return (const char *)evbuffer_pullup(r->body, -1);
}

const char *hreq_peer(const struct hreq *r)
{
    return r->c != NULL ? r->c->peer : "-";
}

const char *hreq_local(const struct hreq *r, uint16_t *port)
{
    *port = r->c != NULL ? r->c->local_port : 0;
    return r->c != NULL ? r->c->local : "";
}

bool hreq_connected(const struct hreq *r)
{
    return r->c != NULL;
}

size_t hreq_output_pending(const struct hreq *r)
{
    return r->c != NULL ? evbuffer_get_length(conn_out(r->c)) : 0;
}

void hreq_set_closecb(struct hreq *r, hreq_close_cb cb, void *arg)
{
    r->closecb = cb;
    r->closearg = arg;
}

void hreq_account(struct hreq *r, struct httpd_account *a, struct httpd_account *b)
{
    req_unaccount(r);
    r->acct[0] = a;
    r->acct[1] = b;
    if (r->c != NULL && r->c->req == r)
        out_sync(r->c);
}

void hreq_add_header(struct hreq *r, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n") != NULL || strpbrk(value, "\r\n") != NULL)
        return; /* never let a value split the answer's head */
    evbuffer_add_printf(r->out_headers, "%s: %s\r\n", name, value);
}

void hreq_reply(struct hreq *r, int status, const char *body, size_t len)
{
    if (r->c != NULL && !r->finished_head) {
        bool bodyless = r->h.method == HM_HEAD || status == 204 || status == 304;
        write_head(r, status, status == 204 || status == 304 ? BODY_NONE : (long long)len);
        if (!bodyless && len > 0)
            evbuffer_add(conn_out(r->c), body, len);
        out_sync(r->c);
    }
    req_finish(r);
}

void hreq_stream_start(struct hreq *r, int status)
{
    if (r->c == NULL || r->finished_head)
        return;
    r->streaming = true;
    write_head(r, status, BODY_STREAMED);
}

void hreq_stream_send(struct hreq *r, struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    if (r->c == NULL || r->c->aborting || !r->streaming || n == 0 || r->h.method == HM_HEAD) {
        evbuffer_drain(b, n);
        return;
    }
    struct evbuffer *out = conn_out(r->c);
    struct httpd *d = r->c->d;
    out_sync(r->c);
    /* A client that does not read must not make the front buffer without bound, nor may one
     * party's clients or all of them together: the stream that would pass a ceiling ends, and
     * what its client missed stays with its session (Last-Event-ID replay). */
    size_t used = evbuffer_get_length(out), limit = d->lim.max_output_bytes;
    const char *key = "limits.max_stream_buffer_bytes";
    for (int i = 0; i < 2; i++) {
        const struct httpd_account *a = r->acct[i];
        if (a != NULL && a->max != 0 && a->bytes + n > a->max) {
            used = a->bytes;
            limit = a->max;
            key = a->what;
        }
    }
    if (d->lim.max_output_total != 0 && d->out_bytes + n > d->lim.max_output_total) {
        used = d->out_bytes;
        limit = d->lim.max_output_total;
        key = "limits.max_buffered_bytes";
    }
    if (used + n > limit) {
        log_warn("stream_dropped peer=%s pending=%zu buffered=%zu limit=%zu note=\"answers not "
                 "taken by clients (%s)\"",
                 r->c->peer, evbuffer_get_length(out), used, limit, key);
        evbuffer_drain(b, n);
        r->c->aborting = true;
        conn_schedule(r->c);
        return;
    }
    if (r->h.minor == 1)
        evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_buffer(out, b);
    if (r->h.minor == 1)
        evbuffer_add(out, "\r\n", 2);
    out_sync(r->c);
}

void hreq_stream_end(struct hreq *r)
{
    if (r->c != NULL && r->streaming && r->h.minor == 1 && r->h.method != HM_HEAD)
        evbuffer_add(conn_out(r->c), "0\r\n\r\n", 5);
    req_finish(r);
}

void hreq_drop(struct hreq *r)
{
    struct hconn *c = r->c;
    if (c != NULL) {
        c->req = NULL;
        c->aborting = true; /* an answer cut short must not look complete: no close_notify */
        conn_schedule(c);
    }
    req_free(r);
}
