/*
 * room.h: a worker's rooms. Local memberships of sessions, the room's
 * subscription to its Redis channel, and fan-out: every event published on a
 * channel is framed once and the same bytes go to every local member. A
 * chat room keeps its position (offset, epoch): gaps in what arrives are
 * filled from the room's history before anything newer is delivered, and a
 * member that asks catches up on what it missed before its first live
 * message.
 */
#ifndef ROOMD_ROOM_H
#define ROOMD_ROOM_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "config.h"
#include "store.h"

struct session;
struct member;

enum room_kind { ROOM_CHAT, ROOM_BROADCAST };

/* What a chat member asks to be sent before its first live message. */
struct room_catchup {
	int		 since;		/* the messages after offset of epoch ... */
	uint64_t	 offset;
	char		 epoch[STORE_EPOCH_MAX + 1];
	unsigned	 history;	/* ... else (or as well) the last `history` messages */
};

/* A history page (or NULL on failure) for room_history's caller. */
typedef void (*room_history_fn)(struct session *, const char *room, size_t rl, const struct store_range *);

/*
 * Start the room layer on this worker: wid names the worker in Redis;
 * dead_wid (or NULL) died in its place, and its members are removed. -1 on
 * failure.
 */
int room_init(struct event_base *, const struct config *, const char *wid, const char *dead_wid);
void room_shutdown(void);
/* A stopping worker whose members have all left takes its name out of Redis. */
void room_farewell(void);
/* Once per tick: unsubscribe rooms left empty. */
void room_tick(uint64_t now);
/* Whether Redis is reachable for room operations. */
int room_service_up(void);

/*
 * Join s to a room (chat: with a name and what to catch up on, or NULL;
 * broadcast: name unused). The member is pending until its enter is
 * published; then it receives the room's events. NULL with *err set
 * ("unavailable", "no_memory") on failure.
 */
struct member *room_join(struct session *, enum room_kind, const char *key, size_t klen,
    const char *name, size_t nlen, const struct room_catchup *, const char **err);
/* Leave: the member stops receiving at once; others get an out event. If
 * tell_self, the session gets its own out event too. */
void room_leave(struct member *, int tell_self);
/* Publish a chat message from m. -1 when Redis is unreachable (error "unavailable"). */
int room_say(struct member *, const char *text, size_t tlen);
/* Publish raw bytes on a broadcast room. */
int room_relay(struct member *, int opcode, const uint8_t *data, size_t len);
/* A page of the room's history for m's session: limit messages before offset (0: now). */
int room_history(struct member *, uint64_t before, unsigned limit, room_history_fn);
/*
 * Answer m's session with who is in the room (the first who_limit names and
 * the total): from a moment-old answer, or one read from Redis for every
 * session that asks meanwhile. -1 if Redis cannot be asked.
 */
int room_who(struct member *);
#define ROOM_ID_MAX	128	/* bytes of a message id, with its NUL */

/*
 * A chat message into a room from outside it (the HTTP API), the same
 * event a member of that name would send: id gets its id, fn its offset,
 * epoch and the room's count. -1 when Redis is unreachable.
 */
int room_post(const char *room, size_t rl, const char *name, size_t nl, const char *text, size_t tlen,
    char id[ROOM_ID_MAX], store_said_fn fn, void *arg);
/* How many rooms have local members (or are being left) on this worker. */
size_t room_count(void);
/* Who hears the payloads of the control channel, which every worker subscribes to while fn is set. */
typedef void (*room_control_fn)(const char *payload, size_t len);
void room_set_control(room_control_fn);
/* A member's name, as roomd keeps it (a guest's starts with PROTO_GUEST). */
const char *room_member_name(const struct member *, size_t *len);
/* A chat room's count as last seen on its channel; -1 for a broadcast room (not counted). */
long room_num(const struct member *);
/*
 * Whether the room dropped m: a chat member whose enter was not done when
 * Redis went away (it was answered "unavailable"). Its session forgets it
 * with room_leave.
 */
int room_member_gone(const struct member *);
const char *room_key_of(const struct member *, size_t *len);
struct member *room_next_of_session(const struct member *);
void room_set_next_of_session(struct member *, struct member *);
/* The link field itself, for unlinking from a session's list. */
struct member **room_next_ref(struct member *);
/* The broadcast room key for route path and room (a control byte keeps it apart from chat rooms). */
size_t room_broadcast_key(char *buf, size_t len, const char *path, const char *room, size_t rlen);

#endif
