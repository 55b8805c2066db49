/*
 * bus.h: a worker's way to Redis: one Redis, the master Sentinel names, or
 * the masters of a Redis Cluster, each over a command link and a pub/sub
 * link (rlink.c). It routes each command to the node that owns its key,
 * follows Cluster redirections, reconnects with backoff, loads the Lua
 * scripts on every node, proves a round trip with a canary for readiness,
 * and tells its user when Redis goes away and comes back.
 */
#ifndef ROOMD_BUS_H
#define ROOMD_BUS_H

#include <stddef.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "config.h"

struct bus_handlers {
	/* A payload published on a channel this worker subscribed to. */
	void	(*message)(const char *ch, size_t chlen, const char *payload, size_t plen);
	/* The server confirmed a subscription. */
	void	(*subscribed)(const char *ch, size_t chlen);
	/*
	 * A subscription ended: one the user left, or one Redis dropped on its
	 * own (its Cluster slot moved). Return 1 if it is still wanted: the bus
	 * subscribes again where the slot is now, and confirms through
	 * subscribed.
	 */
	int	(*unsubscribed)(const char *ch, size_t chlen);
	/* Every node is reachable (again) / one no longer is. */
	void	(*up)(void);
	void	(*down)(void);
	/*
	 * Cluster: one node went away while the others stay up; the channels
	 * it served (bus_channel_lost) are no longer subscribed. The bus
	 * stays ready; commands for that node's slots fail until a master
	 * serves them again.
	 */
	void	(*lost)(void);
};

/*
 * A reply callback: the reply lives only during the call and is NULL when
 * the command failed to get one (the link died); every callback runs
 * exactly once.
 */
typedef void bus_reply_fn(redisReply *reply, void *arg);

/*
 * Register a Lua script before bus_start; its id for bus_eval, -1 if the
 * table is full. A script publishes with redis.call(PUB, channel, payload):
 * PUB is PUBLISH, or SPUBLISH on a Cluster (sharded pub/sub).
 */
int bus_script(const char *src, size_t len);
/* Start connecting; wid names this worker in Redis. -1 on setup failure. */
int bus_start(struct event_base *, const struct config *, const char *wid, const struct bus_handlers *) MUST_CHECK;
void bus_stop(void);
/* Whether every node is up (commands may be sent). */
int bus_ready(void);
/*
 * Whether this worker can publish and hear back within ready_timeout on
 * every node (the canaries' round trips); if not, why in buf.
 */
int bus_healthy(char *why, size_t len);
/*
 * Write the commands queued during this loop turn at once, so Redis works on
 * them while the worker writes to its clients (call at the end of a turn).
 */
void bus_push(void);
/* Whether every command sent has been answered (to drain before exiting). */
int bus_idle(void);
/* During lost: whether ch was served by the node that went away (or by none now). */
int bus_channel_lost(const char *ch, size_t chlen);
/* Subscribe to / leave a channel (confirmed through the handlers). -1 when down. */
int bus_subscribe(const char *ch, size_t chlen);
int bus_unsubscribe(const char *ch, size_t chlen);
/*
 * A command of argc arguments whose key is argv[1] (it picks the Cluster
 * node); fn (may be NULL) gets its reply. -1 when the link is down.
 */
int bus_command(int argc, const char *const *argv, const size_t *argl, bus_reply_fn *fn, void *arg);
/* Publish on a channel: PUBLISH, or SPUBLISH on a Cluster. */
int bus_publish(const char *ch, size_t chlen, const char *payload, size_t plen, bus_reply_fn *fn, void *arg);
/*
 * EVALSHA of a registered script: the first nkeys of argv are its KEYS
 * (the first picks the node), the rest its ARGV. A reply of NOSCRIPT (the
 * server forgot the scripts) makes that node's links reconnect and reload
 * them; fn still gets that reply.
 */
int bus_eval(int script, int nkeys, int argc, const char *const *argv, const size_t *argl,
    bus_reply_fn *fn, void *arg);
/* The masters (1 unless a Cluster), and a keyless command (SCAN) to the i-th of them. */
int bus_nodes(void);
int bus_command_at(int node, int argc, const char *const *argv, const size_t *argl, bus_reply_fn *fn, void *arg);
/* Whether a reply is an error (or missing); if so it is logged. */
int bus_reply_error(const redisReply *);

#endif
