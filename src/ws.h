/*
 * ws.h: a client session: the HTTP/1.1 request that opens it (upgrade,
 * /healthz, errors), then RFC 6455 framing, ping/pong, the close handshake
 * and timeouts, and the route it serves (echo).
 */
#ifndef ROOMD_WS_H
#define ROOMD_WS_H

#include <sys/socket.h>

struct worker;

/* Start a session on an accepted fd. -1 when out of memory (fd left open). */
int ws_accept(struct worker *, int fd, const struct sockaddr *);

#endif
