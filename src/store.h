/*
 * store.h: the rooms' state in Redis. Members and counts, a stream of each
 * room's recent messages with its position (offset and epoch), the channel
 * its events travel on, and each worker's registry and presence. Every
 * change to a room is one Lua script over that room's keys alone (they
 * share the room's hash tag), so a room lives in one Redis Cluster slot.
 */
#ifndef ROOMD_STORE_H
#define ROOMD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "bus.h"
#include "config.h"

#define STORE_EPOCH_MAX	24	/* an epoch's length, at most (ours are 16) */

/* Replies: num < 0 means the command failed (the link died, or Redis refused). */
typedef void (*store_count_fn)(void *arg, long num);
/* A chat message was stored and published (ok) at offset of epoch, to a room of num. */
typedef void (*store_said_fn)(void *arg, int ok, uint64_t offset, const char *epoch, long num);

/* What a history read returned: the room's position now, and the messages. */
struct store_range {
	int		 ok;
	const char	*epoch;		/* "" when the room has no position (yet, or any more) */
	uint64_t	 offset;	/* the room's last offset now */
	size_t		 n;
	const uint64_t	*off;		/* each message's offset, ascending */
	const char *const *json;	/* each message event, as published */
	const size_t	*len;
};
typedef void (*store_range_fn)(void *arg, const struct store_range *);
/* Member names of a room, the first of them only when it is large; total is its count. */
typedef void (*store_who_fn)(void *arg, const char *const *names, const size_t *lens, size_t n, long total);

/*
 * What the room layer hears from the store: the links' events (bus), the
 * answer to every store_say (whether Redis took the message), and that
 * Redis forgot this worker's members while its links stayed up (the other
 * hosts removed them after this one stalled past presence_ttl, or Redis
 * lost its data): every member must be registered again (store_resync).
 */
struct store_handlers {
	struct bus_handlers	 bus;
	void			(*said)(void *arg, int ok);
	void			(*forgotten)(void);
};

/*
 * Start: register the scripts, then the links; wid names this worker. The
 * presence timer refreshes the worker's liveness, checks it is still
 * enrolled, and runs the janitor (which removes the members of workers
 * whose liveness expired). -1 on setup failure.
 */
int store_start(struct event_base *, const struct config *, const char *wid, const struct store_handlers *) MUST_CHECK;
void store_stop(void);

/* The channel of a room into buf; its length, 0 if it does not fit. */
size_t store_channel(char *buf, size_t len, const char *room, size_t rl);
/* The room a channel carries (pointer into ch), or NULL if it is not a room's. */
const char *store_room_of(const char *ch, size_t chlen, size_t *rl);

/* Join a member (registered under this worker first); its enter event carries the room's position. */
int store_enter(const char *room, size_t rl, const char *mid, const char *name, size_t nl);
/* A member left: announced out if Redis knew it (or always, after Redis may have lost it). */
int store_out(const char *room, size_t rl, const char *mid, const char *name, size_t nl,
    int announce_always, store_count_fn, void *arg);
/* Register a member again after the link came back (announced only if its rooms were told it left). */
int store_resync(const char *room, size_t rl, const char *mid, const char *name, size_t nl);
/*
 * A chat message: head is the message event's JSON without its closing
 * brace; the script adds num and offset, appends it to the room's stream
 * and publishes it, all in one step.
 */
int store_say(const char *room, size_t rl, const char *head, size_t hl, void *arg);
/* The same, answered with the message's offset, the room's epoch and num (for callers that say them). */
int store_say_full(const char *room, size_t rl, const char *head, size_t hl, store_said_fn, void *arg);
/* Publish raw bytes on a room's channel (the broadcast route keeps no history). */
int store_relay(const char *room, size_t rl, const char *payload, size_t pl, store_count_fn, void *arg);
/* The room's messages with offsets after `after`, up to `upto` (0: now), at most limit. */
int store_read_after(const char *room, size_t rl, uint64_t after, uint64_t upto, unsigned limit,
    store_range_fn, void *arg);
/* The last limit messages before offset `before` (0: up to now), in offset order. */
int store_read_before(const char *room, size_t rl, uint64_t before, unsigned limit, store_range_fn, void *arg);
/* Member names of a room (at most max of them, and the total). */
int store_who(const char *room, size_t rl, unsigned max, store_who_fn, void *arg);

/*
 * A session with a token, counted for its user (sub) over every worker and
 * host: fn(arg, n) says n >= 0 (admitted, the user's sessions now), -2
 * (max, if > 0, reached: not counted) or -1 (failed). NULL when Redis is
 * unreachable. The count is kept across lost links; close uncounts it.
 */
struct store_user *store_user_open(const char *sub, size_t sl, int max, store_count_fn, void *arg);
void store_user_close(struct store_user *);
/* How many sessions with a token for user `name` are online (fn gets it, or -1). */
int store_user_online(const char *name, size_t nl, store_count_fn, void *arg);

/* ---- for the HTTP API ---- */

/* This worker's liveness record (JSON) for /api/info; it expires presence_ttl after the last put. -1 when down. */
int store_info_put(const char *json, size_t len);
/* Every live worker's record (n of them; a NULL record: a worker without one); ok 0 if Redis failed. */
typedef void (*store_infos_fn)(void *arg, int ok, const char *const *recs, const size_t *lens, size_t n);
int store_infos(store_infos_fn, void *arg);
/*
 * A page of the rooms that have members, from a SCAN cursor (0: the start),
 * scanning about count keys: each room with its count, and the cursor of
 * the next page (0: the last page). A room may come in two pages.
 */
typedef void (*store_rooms_fn)(void *arg, int ok, uint64_t next, const char *const *rooms, const size_t *lens,
    const long *nums, size_t n);
int store_rooms(uint64_t cursor, unsigned count, store_rooms_fn, void *arg);
/* A room's position: its last offset and epoch ("" when it has none). */
typedef void (*store_position_fn)(void *arg, int ok, uint64_t offset, const char *epoch);
int store_position(const char *room, size_t rl, store_position_fn, void *arg);
/* The control channel every worker listens to: subscribe (after every up), publish, recognise. */
int store_control_subscribe(void);
/* Publish a control message; fn gets how many workers heard it (or -1). */
int store_control_publish(const char *payload, size_t pl, store_count_fn, void *arg);
int store_is_control(const char *ch, size_t chlen);
/* During the bus's lost handler: whether the control channel went with the lost node. */
int store_control_lost(void);

/*
 * This worker took the place of worker wid, which died: once Redis is up,
 * remove every member it held from its room (the rooms hear them leave).
 */
void store_bury(const char *wid);
/* A stopping worker with no members left removes its registration (nobody has to bury it). */
void store_farewell(void);

#endif
