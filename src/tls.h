/*
 * tls.h: the TLS contexts: the server's for `listen ... ssl` (TLS 1.2 and
 * newer, modern AEAD ciphers, the certificate and key from the config), and
 * the client's for Redis (redis_tls: the server verified against
 * redis_tls_ca or the system's CAs, an optional client certificate). A
 * worker builds its own at start, so a reload picks up renewed certificates.
 */
#ifndef ROOMD_TLS_H
#define ROOMD_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"

/* A context for cfg's certificate and key; NULL with err filled on failure. */
SSL_CTX *tls_ctx_new(const struct config *, char *err, size_t errlen);
/* A client context for TLS to Redis; NULL with err filled on failure. */
SSL_CTX *tls_client_ctx_new(const struct config *, char *err, size_t errlen);
/* Whether any listener asks for TLS. */
int tls_wanted(const struct config *);

#endif
