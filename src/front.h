/*
 * front.h: where a client connection starts. front_accept takes an accepted
 * socket; the connection then speaks HTTP/1.1 (static files, admin
 * endpoints, the HTTP API) until it upgrades to a WebSocket on one of the
 * routes.
 */
#ifndef ROOMD_FRONT_H
#define ROOMD_FRONT_H

#include <sys/socket.h>
#include <openssl/ssl.h>

struct loop;
struct session;
struct api_req;

#define FRONT_PROXY	0x01	/* a PROXY protocol header comes first */
#define FRONT_API	0x02	/* serves the HTTP API under /api/ */
#define FRONT_API_ONLY	0x04	/* serves the API and the admin endpoints, nothing else */

/*
 * Start a connection on an accepted fd, on a listener with these FRONT_
 * flags; with tls, a TLS handshake comes first. -1 when out of memory (fd
 * left open).
 */
int front_accept(struct loop *, int fd, const struct sockaddr *, int flags, SSL_CTX *tls);

/* The HTTP API's handler: the app layer fills it in and sets loop->api (front.c never names it). */
struct front_api {
	/*
	 * A call that passed every check (rate, key, input): answer it with
	 * front_api_answer, at once or later, holding ws_ref on the session
	 * meanwhile. Requests after it on the connection wait until then.
	 */
	void	(*call)(struct session *, const struct api_req *);
};

/* Answer the API call in flight on the session: status and a JSON body. Nothing if the client is gone. */
void front_api_answer(struct session *, int status, const char *json, size_t len);
/*
 * Close, with code and reason, every WebSocket session on the loop of user
 * (its token's sub, or a name it has in a room of its route) or, if uuid is
 * not NULL, the session with that uuid. Returns how many.
 */
int front_disconnect(struct loop *, const char *user, size_t ul, const uint8_t *uuid, unsigned code,
    const char *reason);

#endif
