/*
 * http.h — the HTTP face of the front: routing, the request checks every endpoint shares
 * (Host, Origin, authentication, server and tenant), Streamable HTTP and the legacy HTTP+SSE
 * transport. Sessions answer exchanges through http_session_transport, never by name.
 */
#ifndef MCPVISOR_HTTP_H
#define MCPVISOR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hreq;
struct front;
struct config;

/* The httpd handler for every request on a listener (arg: struct http_listener). */
void http_handle(struct hreq *req, void *arg);

/* Whether a request's Host names this server: exactly the address the connection reached
 * (local, a URI host, with its port local_port) or "localhost" when that address is loopback,
 * public_url's host, or an allowed_hosts entry; with a port, only the port that name is served
 * on (the listener's; public_url's own; an entry's own). Anything else is refused (421). */
bool http_host_allowed(const struct config *cfg, const char *host, const char *local,
                       uint16_t local_port);

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
