/*
 * jwks.c — fetching and caching the JWKS. Never blocks: the fetch runs on the front's event
 * loop; while it runs, requests that need it wait (bounded) and are resumed by callback.
 */
#include "jwks.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct jwks_waiter {
    void (*done)(void *arg);
    void *arg;
};

struct jwks {
    struct event_base *base;
    const struct config *cfg;
    struct jose_keyset keys;
    struct evdns_base *dns;
    SSL_CTX *ssl_ctx;
    struct evhttp_uri *uri;
    struct evhttp_connection *conn;
    struct event *timer;
    bool fetching;
    time_t last_kid_refresh; /* start of the last refresh asked for by an unknown kid */
    struct jwks_waiter *waiters;
    size_t nwaiters;
};

static const struct jose_keyset no_keys = {NULL, 0};

const struct jose_keyset *jwks_keys(const struct jwks *j)
{
    return j != NULL ? &j->keys : &no_keys;
}

static void schedule(struct jwks *j, int seconds)
{
    struct timeval tv = {.tv_sec = seconds};
    evtimer_add(j->timer, &tv);
}

static void conn_free_later(evutil_socket_t fd, short what, void *arg)
{
    evhttp_connection_free(arg);
}

static void fetch_done(struct jwks *j, bool ok)
{
    j->fetching = false;
    if (j->conn != NULL) {
        /* Not from inside libevent's own callback on this connection: on the next turn. */
        struct timeval zero = {0, 0};
        event_base_once(j->base, -1, EV_TIMEOUT, conn_free_later, j->conn, &zero);
        j->conn = NULL;
    }
    schedule(j, ok ? JWKS_REFRESH_S : JWKS_RETRY_S);
    struct jwks_waiter *w = j->waiters;
    size_t n = j->nwaiters;
    j->waiters = NULL;
    j->nwaiters = 0;
    for (size_t i = 0; i < n; i++)
        w[i].done(w[i].arg);
    free(w);
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct jwks *j = arg;
    char why[256];
    bool ok = false;
    if (req == NULL || evhttp_request_get_response_code(req) != 200) {
        unsigned long e = ERR_get_error();
        log_warn("jwks_fetch_failed url=%s status=%d%s%s", j->cfg->jwt_jwks_url,
                 req != NULL ? evhttp_request_get_response_code(req) : 0, e != 0 ? " tls=" : "",
                 e != 0 ? ERR_reason_error_string(e) : "");
        ERR_clear_error();
        fetch_done(j, false);
        return;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    struct jose_keyset ks;
    if (len == 0 || len > JOSE_MAX_JWKS_BYTES) {
        log_warn("jwks_fetch_failed url=%s reason=\"body of %zu bytes\"", j->cfg->jwt_jwks_url,
                 len);
    } else if (jose_jwks_parse((const char *)evbuffer_pullup(body, -1), len, &ks, why,
                               sizeof(why)) == -1) {
        char q[300];
        log_warn("jwks_invalid url=%s reason=%s note=\"keeping the previous keys\"",
                 j->cfg->jwt_jwks_url, log_quote(q, sizeof(q), why, strlen(why)));
    } else if (ks.nkeys == 0) {
        jose_keyset_free(&ks);
        log_warn("jwks_invalid url=%s reason=\"no usable signing key\" note=\"keeping the "
                 "previous keys\"",
                 j->cfg->jwt_jwks_url);
    } else {
        jose_keyset_free(&j->keys);
        j->keys = ks;
        ok = true;
        log_info("jwks_loaded url=%s keys=%zu", j->cfg->jwt_jwks_url, ks.nkeys);
    }
    fetch_done(j, ok);
}

static int fetch_start(struct jwks *j)
{
    const char *scheme = evhttp_uri_get_scheme(j->uri);
    const char *host = evhttp_uri_get_host(j->uri);
    int port = evhttp_uri_get_port(j->uri);
    bool tls = strcmp(scheme, "https") == 0;
    struct bufferevent *bev = NULL;
    SSL *ssl = NULL;

    if (port < 0)
        port = tls ? 443 : 80;
    if (tls) {
        ssl = SSL_new(j->ssl_ctx);
        if (ssl == NULL)
            return -1;
        /* SNI, and the certificate must name this host (RFC 6125). */
        SSL_set_tlsext_host_name(ssl, host);
        if (SSL_set1_host(ssl, host) != 1) {
            SSL_free(ssl);
            return -1;
        }
        bev = bufferevent_openssl_socket_new(j->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    } else {
        bev = bufferevent_socket_new(j->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL)
        return -1;
    j->conn = evhttp_connection_base_bufferevent_new(j->base, j->dns, bev, host, (uint16_t)port);
    if (j->conn == NULL) {
        bufferevent_free(bev);
        return -1;
    }
    evhttp_connection_set_timeout(j->conn, JWKS_FETCH_TIMEOUT_S);
    evhttp_connection_set_max_body_size(j->conn, JOSE_MAX_JWKS_BYTES);
    evhttp_connection_set_retries(j->conn, 0);
    struct evhttp_request *req = evhttp_request_new(on_response, j);
    if (req == NULL)
        goto fail;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Accept", "application/jwk-set+json, application/json");
    evhttp_add_header(h, "User-Agent", "mcpvisor");
    const char *path = evhttp_uri_get_path(j->uri);
    const char *query = evhttp_uri_get_query(j->uri);
    char target[2048];
    snprintf(target, sizeof(target), "%s%s%s", path != NULL && path[0] != '\0' ? path : "/",
             query != NULL ? "?" : "", query != NULL ? query : "");
    if (evhttp_make_request(j->conn, req, EVHTTP_REQ_GET, target) == -1)
        goto fail; /* libevent freed req */
    j->fetching = true;
    return 0;
fail:
    evhttp_connection_free(j->conn);
    j->conn = NULL;
    return -1;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct jwks *j = arg;
    if (j->fetching)
        return;
    if (fetch_start(j) == -1) {
        log_warn("jwks_fetch_failed url=%s reason=\"cannot start the request\"",
                 j->cfg->jwt_jwks_url);
        schedule(j, JWKS_RETRY_S);
    }
}

int jwks_refresh(struct jwks *j, void (*done)(void *arg), void *arg)
{
    if (j == NULL || j->uri == NULL || j->nwaiters >= JWKS_MAX_WAITERS)
        return -1;
    if (!j->fetching) {
        /* Only refreshes that callers can provoke are limited; scheduled ones do not count. */
        time_t now = time(NULL);
        if (j->last_kid_refresh != 0 && now - j->last_kid_refresh < JWKS_MIN_REFRESH_S)
            return -1;
        if (fetch_start(j) == -1)
            return -1;
        j->last_kid_refresh = now;
    }
    struct jwks_waiter *w = realloc(j->waiters, (j->nwaiters + 1) * sizeof(*w));
    if (w == NULL)
        return -1;
    j->waiters = w;
    w[j->nwaiters].done = done;
    w[j->nwaiters].arg = arg;
    j->nwaiters++;
    return 0;
}

struct jwks *jwks_new(struct event_base *base, const struct config *cfg)
{
    char why[256];
    if (!cfg->has_jwt)
        return NULL;
    struct jwks *j = calloc(1, sizeof(*j));
    if (j == NULL)
        fatalx("out of memory");
    j->base = base;
    j->cfg = cfg;
    if (cfg->jwt_jwks_text != NULL) {
        if (jose_jwks_parse(cfg->jwt_jwks_text, strlen(cfg->jwt_jwks_text), &j->keys, why,
                            sizeof(why)) == -1)
            fatalx("auth.jwt.jwks_file: %s", why);
        log_info("jwks_loaded file=%s keys=%zu", cfg->jwt_jwks_file, j->keys.nkeys);
        return j;
    }
    j->uri = evhttp_uri_parse(cfg->jwt_jwks_url);
    if (j->uri == NULL || evhttp_uri_get_host(j->uri) == NULL)
        fatalx("auth.jwt.jwks_url: cannot parse %s", cfg->jwt_jwks_url);
    j->dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (j->dns == NULL)
        j->dns = evdns_base_new(base, 0); /* no resolv.conf: numeric hosts still work */
    j->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (j->ssl_ctx == NULL)
        fatalx("cannot create a TLS client context");
    SSL_CTX_set_min_proto_version(j->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(j->ssl_ctx, SSL_VERIFY_PEER, NULL);
    /* The system's trust store; SSL_CERT_FILE / SSL_CERT_DIR in the environment override it. */
    if (SSL_CTX_set_default_verify_paths(j->ssl_ctx) != 1)
        log_warn("tls_no_trust_store note=\"the JWKS fetch over HTTPS will fail\"");
    j->timer = evtimer_new(base, on_timer, j);
    if (j->timer == NULL)
        fatalx("out of memory");
    schedule(j, 0);
    return j;
}

void jwks_reload_text(struct jwks *j, const char *text)
{
    char why[256];
    struct jose_keyset ks;
    if (j == NULL || text == NULL || j->uri != NULL)
        return;
    if (jose_jwks_parse(text, strlen(text), &ks, why, sizeof(why)) == -1) {
        char q[300];
        log_error("jwks_reload_refused reason=%s note=\"keeping the current keys\"",
                  log_quote(q, sizeof(q), why, strlen(why)));
        return;
    }
    jose_keyset_free(&j->keys);
    j->keys = ks;
    log_info("jwks_loaded file=%s keys=%zu", j->cfg->jwt_jwks_file, ks.nkeys);
}

void jwks_free(struct jwks *j)
{
    if (j == NULL)
        return;
    if (j->conn != NULL)
        evhttp_connection_free(j->conn);
    if (j->timer != NULL)
        event_free(j->timer);
    free(j->waiters);
    if (j->uri != NULL)
        evhttp_uri_free(j->uri);
    if (j->dns != NULL)
        evdns_base_free(j->dns, 0);
    if (j->ssl_ctx != NULL)
        SSL_CTX_free(j->ssl_ctx);
    jose_keyset_free(&j->keys);
    free(j);
}
