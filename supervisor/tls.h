/*
 * tls.h — TLS for the HTTPS listeners: TLS 1.2 and 1.3 only, forward-secret AEAD cipher suites,
 * no renegotiation, no compression. Certificates and keys arrive as PEM text (the front cannot
 * read the files; the parent reads them into the configuration bundle).
 */
#ifndef MCPVISOR_TLS_H
#define MCPVISOR_TLS_H

#include <stddef.h>

struct ssl_ctx_st;

/* A server context for cert_pem (leaf first, then its chain) and key_pem; NULL with a message. */
struct ssl_ctx_st *tls_server_ctx(const char *cert_pem, const char *key_pem, char *err,
                                  size_t errlen);

#endif
