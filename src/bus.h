/*
 * bus.h: a worker's link to Redis (hiredis async on the worker's loop): one
 * connection for commands, one for pub/sub. Room state lives in Redis; each
 * room has one channel. Reconnects with backoff and tells its user when the
 * link goes down and comes back up.
 */
#ifndef ROOMD_BUS_H
#define ROOMD_BUS_H

#include <stddef.h>
#include <event2/event.h>

#include "config.h"

struct bus_handlers {
	/* A payload published on a room's channel. */
	void	(*message)(const char *room, size_t rlen, const char *payload, size_t plen);
	/* The server confirmed a SUBSCRIBE / UNSUBSCRIBE for a room. */
	void	(*subscribed)(const char *room, size_t rlen);
	void	(*unsubscribed)(const char *room, size_t rlen);
	/* Both connections are up (again) / the link broke. */
	void	(*up)(void);
	void	(*down)(void);
	/* A bus_publish with an arg was (ok) or was not (!ok) accepted by Redis. */
	void	(*published)(void *arg, int ok);
};

/* A reply to bus_enter/bus_out/bus_resync: the room's count, or -1 on failure. */
typedef void (*bus_count_fn)(void *arg, long num);
/* A reply to bus_who: member names (NULL, 0 on failure). */
typedef void (*bus_who_fn)(void *arg, const char *const *names, const size_t *lens, size_t n);

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
/* Whether an unsubscribe may be sent (no command pending on the channel). */
int bus_subscribe(const char *room, size_t rlen);
int bus_unsubscribe(const char *room, size_t rlen);
/*
 * Publish on a room's channel. -1 when the link is down. With an arg, the
 * handlers' published(arg, ok) tells later whether Redis took it.
 */
int bus_publish(const char *room, size_t rlen, const char *payload, size_t plen, void *arg);
/* Atomically add/remove a member, publish the enter/out event, answer with the count. */
int bus_enter(const char *room, size_t rlen, const char *mid, const char *name, size_t nlen,
    bus_count_fn, void *arg);
int bus_out(const char *room, size_t rlen, const char *mid, const char *name, size_t nlen,
    int announce_always, bus_count_fn, void *arg);
/*
 * Re-register a member after a reconnect; publishes the count, or an enter
 * event if Redis had lost the member (others were told it left).
 */
int bus_resync(const char *room, size_t rlen, const char *mid, const char *name, size_t nlen);
/* Member names of a room. */
int bus_who(const char *room, size_t rlen, bus_who_fn, void *arg);

/*
 * Master side (blocking, short timeouts): remove every member a worker held
 * and tell their rooms. Returns how many members were removed, -1 on error.
 */
int bus_cleanup_worker_sync(const struct config *, const char *wid);

#endif
