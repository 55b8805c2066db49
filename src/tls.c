/*
 * tls.c: building the SSL_CTX. Errors name the file and OpenSSL's reason, so
 * a bad certificate is a config error at startup or reload, never a
 * surprise in a worker.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>

#include "tls.h"

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3's defaults are all modern). */
#define TLS12_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

int
tls_wanted(const struct config *c)
{
	for (int i = 0; i < c->nlisten; i++)
		if (c->listen[i].ssl)
			return 1;
	return 0;
}

static void
ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s %s: %s", what, file, e != 0 ? buf : "failed");
	ERR_clear_error();
}

/* WebSocket rides on HTTP/1.1: pick it if the client offers ALPN. */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
    unsigned int inlen, void *arg)
{
	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *
tls_ctx_new(const struct config *c, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (c->ssl_certificate == NULL || c->ssl_certificate_key == NULL) {
		snprintf(err, errlen, "listen ... ssl needs ssl_certificate and ssl_certificate_key");
		return NULL;
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		ssl_err(err, errlen, "SSL_CTX_new", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_NO_COMPRESSION);
	/* Idle connections give their buffers back; writes may be partial and move. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		ssl_err(err, errlen, "ssl ciphers", "");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, c->ssl_certificate) != 1) {
		ssl_err(err, errlen, "ssl_certificate", c->ssl_certificate);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->ssl_certificate_key, SSL_FILETYPE_PEM) != 1) {
		ssl_err(err, errlen, "ssl_certificate_key", c->ssl_certificate_key);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, errlen, "ssl_certificate_key does not match", c->ssl_certificate);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL_CTX *
tls_client_ctx_new(const struct config *c, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		ssl_err(err, errlen, "SSL_CTX_new", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* bufferevent_openssl may hand SSL_write a moved buffer after a partial write. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (c->redis_tls_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, c->redis_tls_ca, NULL) != 1) {
			ssl_err(err, errlen, "redis_tls_ca", c->redis_tls_ca);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ssl_err(err, errlen, "the system's CA certificates", "");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (c->redis_tls_cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, c->redis_tls_cert) != 1) {
			ssl_err(err, errlen, "redis_tls_cert", c->redis_tls_cert);
			SSL_CTX_free(ctx);
			return NULL;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, c->redis_tls_key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			ssl_err(err, errlen, "redis_tls_key", c->redis_tls_key);
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	return ctx;
}
