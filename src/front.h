/*
 * front.h: where a client connection starts. front_accept takes an accepted
 * socket; the connection then speaks HTTP/1.1 (static files, admin
 * endpoints) until it upgrades to a WebSocket on one of the routes.
 */
#ifndef ROOMD_FRONT_H
#define ROOMD_FRONT_H

#include <sys/socket.h>
#include <openssl/ssl.h>

struct loop;

/*
 * Start a connection on an accepted fd: with proxy, a PROXY protocol header
 * must come first; with tls, a TLS handshake. -1 when out of memory (fd left open).
 */
int front_accept(struct loop *, int fd, const struct sockaddr *, int proxy, SSL_CTX *tls);

#endif
