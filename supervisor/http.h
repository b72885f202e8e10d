/*
 * http.h — the HTTP face of the front: routing, the request checks every endpoint shares
 * (Host, Origin, authentication, server and tenant), Streamable HTTP and the legacy HTTP+SSE
 * transport. Sessions answer exchanges through http_session_transport, never by name.
 */
#ifndef MCPVISOR_HTTP_H
#define MCPVISOR_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct hreq;
struct front;

/* The httpd handler for every request on a listener (arg: struct http_listener). */
void http_handle(struct hreq *req, void *arg);

/* How sessions answer exchanges (given to session_module_init). */
struct session_transport;
extern const struct session_transport http_session_transport;

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

#endif
