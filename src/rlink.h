/*
 * rlink.h: one connection to one Redis server on a worker's event loop
 * (TCP, a socket path or TLS), which logs in (AUTH, SELECT, CLIENT SETNAME)
 * and then carries commands answered in order, or, on a subscriber link,
 * pub/sub pushes. Replies are parsed by hiredis's redisReader.
 */
#ifndef ROOMD_RLINK_H
#define ROOMD_RLINK_H

#include <stddef.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "config.h"

struct rlink;

/*
 * A command's answer. The reply lives only during the call; it is NULL if
 * the link failed or was closed first. Every callback runs exactly once.
 */
typedef void rlink_reply_fn(redisReply *reply, void *arg);

struct rlink_opts {
	const char	*host;		/* or path */
	int		 port;
	const char	*path;		/* a Unix socket, or NULL */
	const char	*user;		/* ACL user, or "" / NULL */
	const char	*password;	/* "" / NULL: no AUTH */
	int		 db;
	const char	*name;		/* CLIENT SETNAME, or NULL */
	SSL_CTX		*tls;		/* NULL: plain text */
	int		 subscriber;	/* after login, every reply goes to push */
	int		 timeout_ms;	/* to connect and log in */
};

struct rlink_cbs {
	/* Logged in: commands may be sent. */
	void	(*up)(void *ud, struct rlink *);
	/*
	 * The link failed (why says how). Every pending callback has run with
	 * NULL; the link is freed after this returns: forget it.
	 */
	void	(*down)(void *ud, struct rlink *, const char *why);
	/* A subscriber link's message, confirmation or error (alive only during the call). */
	void	(*push)(void *ud, struct rlink *, redisReply *);
};

/* Start connecting; NULL (with why) if that fails at once. */
struct rlink *rlink_open(struct event_base *, const struct rlink_opts *, const struct rlink_cbs *, void *ud,
    char *why, size_t whylen);
/*
 * Close it. Pending callbacks run with NULL; down is not called. With reset
 * the socket is reset, so the kernel drops what it had not sent yet.
 */
void rlink_free(struct rlink *, int reset);
/* Whether it is logged in. */
int rlink_is_up(const struct rlink *);
/* Commands sent and not yet answered. */
size_t rlink_pending(const struct rlink *);
/*
 * Write what is queued now rather than on the next loop turn (plain links;
 * TLS links write on their own). Ends a loop turn, before its long flushes.
 */
void rlink_push(struct rlink *);
/* "host:port" or the path, for logs. */
const char *rlink_peer(const struct rlink *);

/*
 * Send a command (argv in RESP) or bytes already in RESP. fn (may be NULL)
 * gets the answer; on a subscriber link there is none, fn must be NULL.
 * -1 when the link is not up or out of memory (fn is not called then).
 */
int rlink_command(struct rlink *, int argc, const char *const *argv, const size_t *argl,
    rlink_reply_fn *fn, void *arg);
int rlink_send(struct rlink *, const char *resp, size_t len, rlink_reply_fn *fn, void *arg);

#endif
