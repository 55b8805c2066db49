/*
 * ws.h: a client session: the HTTP/1.1 request that opens it (upgrade,
 * /healthz, errors), then RFC 6455 framing, ping/pong, the close handshake
 * and timeouts, and the route it serves (echo, chat, broadcast). Route
 * handlers use the small API below.
 */
#ifndef ROOMD_WS_H
#define ROOMD_WS_H

#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "config.h"
#include "log.h"
#include "sbuf.h"

struct worker;
struct session;
struct auth_identity;
struct chat_conn;

/*
 * Start a session on an accepted fd; with proxy, a PROXY protocol header
 * must come first; with tls, a TLS handshake. -1 when out of memory (fd left open).
 */
int ws_accept(struct worker *, int fd, const struct sockaddr *, int proxy, SSL_CTX *tls);

/* Where the chat layer keeps its per-session state. */
struct chat_conn **ws_chat(struct session *);
/* Queue a complete frame held in b (shared; takes its own reference). */
void ws_send_frame(struct session *, struct sbuf *);
/* The same for one member of a broadcast: 1 if queued; the caller counts messages in bulk. */
int ws_send_shared(struct session *, struct sbuf *);
/* Build and queue a text frame with this payload. */
void ws_send_text(struct session *, const char *, size_t);
/* Start the close handshake with code and reason. */
void ws_close(struct session *, uint16_t code, const char *reason);
/* Whether data may still be sent (open, not closing). */
int ws_is_open(const struct session *);
/* Keep a session's memory alive across an asynchronous call. */
void ws_ref(struct session *);
void ws_unref(struct session *);
/* A query parameter's raw value from the upgrade request; NULL if absent. */
const char *ws_query_param(const struct session *, const char *name, size_t *len);
const struct cfg_route *ws_route(const struct session *);
/* Log with the session's id, uuid, address and route. */
void ws_log(struct session *, enum log_level, const char *, ...) PRINTF_LIKE(3, 4);
/* The identity a valid token gave the session, or NULL. */
const struct auth_identity *ws_identity(const struct session *);
/* Window bits to compress a len-byte message to this session with, or 0 for plain. */
int ws_deflate_bits(const struct session *, size_t len);
/* A complete compressed (RSV1) frame, or NULL if compression does not pay or fails. */
struct sbuf *ws_frame_deflate(int bits, int opcode, const void *payload, size_t len) MUST_CHECK;
/* Build a complete server frame (header + payload) in one shared block. */
struct sbuf *ws_frame_new(int opcode, const void *payload, size_t len) MUST_CHECK;

#endif
