/*
 * tls.c — building server contexts from PEM text. Pure set-up: no I/O of its own.
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

/* TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only. TLS 1.3 suites are all AEAD. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static void openssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    snprintf(err, errlen, "%s: %s", what, e != 0 ? ERR_reason_error_string(e) : "unknown error");
    ERR_clear_error();
}

struct ssl_ctx_st *tls_server_ctx(const char *cert_pem, const char *key_pem, char *err,
                                  size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BIO *bio = NULL;
    X509 *x = NULL;
    EVP_PKEY *key = NULL;

    if (ctx == NULL) {
        openssl_err(err, errlen, "TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        openssl_err(err, errlen, "cipher list");
        goto fail;
    }
    bio = BIO_new_mem_buf(cert_pem, -1);
    x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
        openssl_err(err, errlen, "tls.cert: not a PEM certificate");
        goto fail;
    }
    X509_free(x);
    x = NULL;
    /* The rest of the file is the chain, leaf's issuer first. */
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            openssl_err(err, errlen, "tls.cert: chain certificate");
            goto fail;
        }
        x = NULL; /* owned by ctx now */
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(bio);
    bio = BIO_new_mem_buf(key_pem, -1);
    key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    if (key == NULL) {
        openssl_err(err, errlen,
                    "tls.key: not a PEM private key (encrypted keys are not supported)");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        openssl_err(err, errlen, "tls.key does not match tls.cert");
        goto fail;
    }
    EVP_PKEY_free(key);
    BIO_free(bio);
    return ctx;
fail:
    X509_free(x);
    EVP_PKEY_free(key);
    BIO_free(bio);
    SSL_CTX_free(ctx);
    return NULL;
}
