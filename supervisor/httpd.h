/*
 * httpd.h — mcpvisor's HTTP/1.1 server: listeners, connections, request framing, deadlines and
 * the refusals it gives on its own (each with a JSON-RPC error body). Owns sockets and bytes;
 * knows nothing of MCP, sessions or credentials, and never calls upward except through the
 * handler and close callbacks it is given.
 *
 * Why not evhttp: libevent 2.1 answers framing errors (oversized head, malformed request line,
 * body limits) with HTML before any callback runs, has only idle timeouts (a head drip-fed one
 * byte at a time lives for days), counts nothing before a request is complete, and accepts
 * requests that other parsers read differently (two Content-Length headers, obs-fold, bare LF).
 */
#ifndef MCPVISOR_HTTPD_H
#define MCPVISOR_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct ssl_st;
struct httpd;
struct hreq;

#define HTTPD_MAX_FIELDS 128 /* header fields in one request head; 431 beyond */

struct httpd_limits {
    size_t max_header_bytes;    /* request line and header fields together; 431 beyond */
    size_t max_body_bytes;      /* 413 beyond, before the body is read */
    uint32_t max_connections;   /* admitted connections on all listeners */
    uint32_t max_per_address;   /* admitted connections from one IPv4 address or IPv6 /64 */
    uint32_t header_timeout_ms; /* absolute: accept (or a request's first byte) to end of head */
    uint32_t body_timeout_ms;   /* absolute: end of head to end of body */
    uint32_t idle_timeout_ms;   /* keep-alive: end of a response to the next request's first byte */
    size_t max_output_bytes;    /* a streamed answer the client does not take ends beyond this */
    size_t max_output_total;    /* the same, answers toward all connections together */
};

/* Bytes of answers untaken by clients, summed over the requests tied to one party (a principal,
 * a tenant): a streamed answer that would pass max ends like one past max_output_bytes. */
struct httpd_account {
    size_t bytes;
    size_t max;       /* 0: no ceiling */
    const char *what; /* the key named in the log line */
};

enum hmethod { HM_GET = 1, HM_HEAD, HM_POST, HM_PUT, HM_DELETE, HM_OPTIONS, HM_PATCH };

/* Called once per complete request (head and body read). The request stays valid until the
 * handler's side finishes it with hreq_reply, hreq_stream_end or hreq_drop. */
typedef void (*httpd_handler)(struct hreq *r, void *arg);
/* Returns a new SSL for an accepted connection of an HTTPS listener, or NULL to refuse it. */
typedef struct ssl_st *(*httpd_new_ssl)(void *arg);
/* The connection carrying r ended before r was finished: r stays valid (finishing it only frees
 * it) until the callee finishes or drops it. */
typedef void (*hreq_close_cb)(struct hreq *r, void *arg);

/* lim is copied. */
struct httpd *httpd_new(struct event_base *base, const struct httpd_limits *lim);
/* Serves the listening socket fd (ownership passes); tls NULL for plain HTTP. max_conns: its own
 * ceiling on admitted connections (0: only the global one). */
int httpd_listen(struct httpd *d, int fd, uint32_t max_conns, httpd_handler handler,
                 httpd_new_ssl tls, void *arg);
/* Closes every listener and connection; unfinished requests get their close callback. */
void httpd_free(struct httpd *d);
size_t httpd_connections(const struct httpd *d);
/* Bytes of answers written toward all connections and not yet taken by their clients (as last
 * seen: a connection's share is updated when it writes or drains). */
size_t httpd_output_buffered(const struct httpd *d);

/* ---- one request ---------------------------------------------------------------------- */

enum hmethod hreq_method(const struct hreq *r);
const char *hreq_path(const struct hreq *r);  /* the target's path, not decoded */
const char *hreq_query(const struct hreq *r); /* after '?', or NULL */
/* A header field's value (name case-insensitive), or NULL. Fields mcpvisor reads are refused
 * with 400 when a request carries them twice, so the first is the only one. */
const char *hreq_header(const struct hreq *r, const char *name);
/* The body (NUL-terminated for convenience; len excludes the NUL). */
const char *hreq_body(const struct hreq *r, size_t *len);
const char *hreq_peer(const struct hreq *r); /* remote address, no port */
/* The address the client connected to, as the kernel reports it (borrowed: use it before
 * returning to the event loop): a URI host, IPv6 in brackets, an IPv4-mapped address as IPv4,
 * with its port in *port; "" and 0 once the connection ended. */
const char *hreq_local(const struct hreq *r, uint16_t *port);
bool hreq_connected(const struct hreq *r);
/* Bytes of answers written but not yet taken by the client. */
size_t hreq_output_pending(const struct hreq *r);
void hreq_set_closecb(struct hreq *r, hreq_close_cb cb, void *arg);
/* Counts what r's connection holds untaken, while r is its request, in a and b (either may be
 * NULL; both must outlive r or be detached by ending r). */
void hreq_account(struct hreq *r, struct httpd_account *a, struct httpd_account *b);

/* Adds a response header field (copied). name and value must hold no CR, LF or NUL. */
void hreq_add_header(struct hreq *r, const char *name, const char *value);
/* Answers with a body of len bytes and finishes r. */
void hreq_reply(struct hreq *r, int status, const char *body, size_t len);
/* Starts an answer whose body follows in pieces (chunked; HTTP/1.0: ends with the connection). */
void hreq_stream_start(struct hreq *r, int status);
/* Sends what b holds (drained) as the next piece. When the client has left more than
 * max_output_bytes untaken, the connection is ended instead (the close callback runs). */
void hreq_stream_send(struct hreq *r, struct evbuffer *b);
/* Ends a streamed answer and finishes r. */
void hreq_stream_end(struct hreq *r);
/* Gives r up without (more of) an answer: closes its connection and frees r. */
void hreq_drop(struct hreq *r);

/* ---- for tests ------------------------------------------------------------------------ */

struct hhead {
    enum hmethod method;
    int minor; /* HTTP/1.minor */
    char *path, *query;
    struct {
        char *name, *value;
    } f[HTTPD_MAX_FIELDS];
    size_t nf;
    int64_t content_length; /* -1: none */
    bool chunked, expect_continue, close;
};

/* Parses a request head in place (head: len bytes ending in CRLF CRLF, NUL after them). Returns 0,
 * or the HTTP status of the refusal (400, 417, 431, 501, 505) with *why saying what was wrong. */
int httpd_parse_head(char *head, size_t len, struct hhead *h, const char **why);

#endif
