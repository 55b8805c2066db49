/*
 * loop.h: the event loop a worker runs its sessions on, and the context its
 * sessions share: the config, the connections (flushed once per turn, room
 * messages possibly coalesced, closed ones freed after the turn),
 * randomness, the routes' handlers, and whether new sessions are welcome.
 */
#ifndef ROOMD_LOOP_H
#define ROOMD_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "config.h"
#include "conn.h"

struct route_ops;
struct front_api;

struct loop {
	struct conn_ctx		 conns;		/* first: sessions find their loop from it */
	struct event_base	*base;
	const struct config	*cfg;
	/* The handler of each route kind (NULL: the kind serves nothing). */
	const struct route_ops	*const *routes;
	/* The HTTP API's handler (NULL: the API answers 503). */
	const struct front_api	*api;
	/* Whether sessions may start here; why in buf when not (set by the loop's owner). */
	int			(*ready)(void *arg, char *why, size_t len);
	void			*ready_arg;
	int			 stopping;	/* draining: no new sessions */
	int			 retiring;	/* a successor accepts on our sockets */
	/* Broadcast coalescing. */
	struct event		*bulk_timer;	/* ends a coalescing pause */
	uint64_t		 bulk_last;	/* µs: end of the last broadcast flush */
	uint64_t		 bulk_pause;	/* µs to hold the next broadcasts for */
	int			 bulk_due;	/* the pause is over: flush this turn */
	uint64_t		 rng[2];	/* xorshift128+ state for uuids and masks */
};

/* The loop whose conn context x is. */
static inline struct loop *loop_of(struct conn_ctx *x) { return (struct loop *)(void *)x; }

/* Set up on base with cfg. -1 when out of memory. */
int loop_init(struct loop *, struct event_base *, const struct config *) MUST_CHECK;
/* Close every connection and free what the loop holds (not the base). */
void loop_free(struct loop *);
/*
 * The end of a loop turn: write queued replies, then queued room messages
 * (held back a little under load, so that one write carries several), then
 * free what was closed during the turn.
 */
void loop_end_turn(struct loop *);
/* Once per tick: timeouts of every connection. */
void loop_tick(struct loop *, uint64_t now);
/* 64 random bits. */
uint64_t loop_random(struct loop *);
/* Whether sessions may start; why says what is missing when not. */
int loop_ready(struct loop *, char *why, size_t len);

#endif
