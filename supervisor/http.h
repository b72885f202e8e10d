/*
 * http.h — the HTTP face of the front: routing, the request checks every endpoint shares
 * (Host, Origin, authentication, server and tenant), Streamable HTTP and the legacy HTTP+SSE
 * transport. Helpers here are also used by session.c to answer exchanges.
 */
#ifndef MCPVISOR_HTTP_H
#define MCPVISOR_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct hreq;
struct front;
struct session;

/* The httpd handler for every request on a listener (arg: struct http_listener). */
void http_handle(struct hreq *req, void *arg);

/* Answers with a JSON body and status. `session` (may be NULL) adds Mcp-Session-Id. */
void http_reply_json(struct hreq *req, int status, const char *json, size_t len,
                     const struct session *s);
/* Answers with a JSON-RPC error body (id null) and status. */
void http_reply_error(struct hreq *req, int status, int code, const char *message);
/* Starts a text/event-stream answer (headers only). */
void http_start_sse(struct hreq *req, const struct session *s);

struct http_listener;
/* Per-listener context for http_handle (malloc'ed; freed with free()). */
struct http_listener *http_listener_new(struct front *f, bool admin);
void http_listener_free(struct http_listener *l);
struct ssl_ctx_st;
struct ssl_st;
/* Makes the listener HTTPS with ctx (ownership passes), or swaps its context on a reload. */
void http_listener_set_tls(struct http_listener *l, struct ssl_ctx_st *ctx);
/* httpd's TLS callback: a new SSL from the listener's current context. */
struct ssl_st *http_listener_new_ssl(void *arg);

/* Connection bookkeeping: the stream (or NULL) whose exchange uses this request's connection. */
void http_conn_bind(struct front *f, struct hreq *req, void *stream);

#endif
