/*
 * bus.h: a worker's links to Redis (hiredis async on the worker's loop): one
 * connection for commands, one for pub/sub. It reconnects with backoff,
 * loads the Lua scripts it was given on every new link (then calls them by
 * SHA-1), proves a round trip with a canary for readiness, and tells its
 * user when the links go down and come back up.
 */
#ifndef ROOMD_BUS_H
#define ROOMD_BUS_H

#include <stddef.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "config.h"

struct bus_handlers {
	/* A payload published on a channel this worker subscribed to. */
	void	(*message)(const char *ch, size_t chlen, const char *payload, size_t plen);
	/* The server confirmed a SUBSCRIBE / UNSUBSCRIBE. */
	void	(*subscribed)(const char *ch, size_t chlen);
	void	(*unsubscribed)(const char *ch, size_t chlen);
	/* Both links are up (again) / the links broke. */
	void	(*up)(void);
	void	(*down)(void);
};

/*
 * A reply callback, hiredis's own type: the reply (a redisReply *) lives
 * only during the call and is NULL when the link died first; every
 * callback runs exactly once.
 */
typedef redisCallbackFn bus_reply_fn;

/* Register a Lua script before bus_start; returns its id for bus_eval, -1 if the table is full. */
int bus_script(const char *src, size_t len);
/* Start connecting; wid names this worker in Redis. -1 on setup failure. */
int bus_start(struct event_base *, const struct config *, const char *wid, const struct bus_handlers *) MUST_CHECK;
void bus_stop(void);
/* Whether both links are up (commands may be sent). */
int bus_ready(void);
/*
 * Whether this worker can publish and hear back within ready_timeout (the
 * canary's round trip); if not, why in buf.
 */
int bus_healthy(char *why, size_t len);
/* Whether every command sent has been answered (to drain before exiting). */
int bus_idle(void);
/* Subscribe to / leave a channel (confirmed through the handlers). -1 when down. */
int bus_subscribe(const char *ch, size_t chlen);
int bus_unsubscribe(const char *ch, size_t chlen);
/* A command of argc arguments; fn (may be NULL) gets its reply. -1 when the link is down. */
int bus_command(int argc, const char *const *argv, const size_t *argl, bus_reply_fn *fn, void *arg);
/*
 * EVALSHA of a registered script: the first nkeys of argv are its KEYS, the
 * rest its ARGV. A reply of NOSCRIPT (the server forgot the scripts) makes
 * the links reconnect and reload them; fn still gets that reply.
 */
int bus_eval(int script, int nkeys, int argc, const char *const *argv, const size_t *argl,
    bus_reply_fn *fn, void *arg);
/* Whether a reply is an error; if so it is logged (NOSCRIPT handled as above). */
int bus_reply_error(const redisReply *);

#endif
