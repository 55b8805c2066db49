/*
 * ws.h: a WebSocket session as the routes see it: the route handler table
 * a route fills in, and the calls a route makes: send frames (one shared
 * block for many sessions), close, log, and what the opening request said.
 */
#ifndef ROOMD_WS_H
#define ROOMD_WS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "sbuf.h"

struct session;
struct auth_identity;

/* Why the session engine turned a client down; the route says so in its protocol. */
enum ws_refusal {
	WS_REFUSED_AUTH,	/* no valid token (then the session closes with 4001) */
	WS_REFUSED_RATE,	/* a message over the rate limit was dropped */
};

/*
 * What a route does with its sessions. The session engine calls these and
 * never names a route; a NULL entry does nothing.
 */
struct route_ops {
	/* Before the 101 under auth_failure http: 0 to go on, else the HTTP status to refuse with. */
	int	(*admit)(struct session *, const char **why);
	/* The session was upgraded. */
	void	(*open)(struct session *);
	/* A complete message (the route may keep a reference to b). */
	void	(*message)(struct session *, int opcode, struct sbuf *b);
	/* Periodic timers; now in ms (monotonic). */
	void	(*tick)(struct session *, uint64_t now);
	/* Graceful stop, before the 1001 close: let go of shared state now. */
	void	(*shutdown)(struct session *);
	/* The session is gone: free the route's state. */
	void	(*free)(struct session *);
	/* What the access line shows for the session (its rooms), escaped, in buf. */
	void	(*describe)(struct session *, char *buf, size_t len);
	/* Tell the client it was refused, in the route's protocol. */
	void	(*refuse)(struct session *, enum ws_refusal);
	/* Whether the session goes by this name in the route (a chat member's name), for disconnects. */
	int	(*named)(struct session *, const char *name, size_t len);
	/*
	 * What rate_limit does to a message over it: WS_RATE_REFUSE drops it
	 * and calls refuse (a client that keeps pushing is closed with 1008);
	 * WS_RATE_PACE serves it, then reads no more until the bucket refills
	 * (for routes that have no way to say no).
	 */
	int	rate_mode;
};

#define WS_RATE_REFUSE	0
#define WS_RATE_PACE	1

/* The route's per-session state (NULL until set). */
void *ws_data(const struct session *);
void ws_set_data(struct session *, void *);
const struct config *ws_config(const struct session *);
const struct cfg_route *ws_route(const struct session *);
/* Queue a complete frame held in b (shared; takes its own reference). */
void ws_send_frame(struct session *, struct sbuf *);
/* The same for one member of a broadcast: 1 if queued; the caller counts messages in bulk. */
int ws_send_shared(struct session *, struct sbuf *);
/* Build and queue a text frame with this payload. */
void ws_send_text(struct session *, const char *, size_t);
/*
 * Send the payload held in b (headroom WS_MAX_SERVER_HEADER) as one message,
 * framed in place when it is not compressed; reading pauses while the
 * client leaves too much unread (an echo).
 */
void ws_send_message(struct session *, int opcode, struct sbuf *b);
/*
 * Stop reading the session's messages (hold) until the route has an answer
 * it waits for; what arrives meanwhile waits, in order, and is handled when
 * the hold ends.
 */
void ws_hold(struct session *, int hold);
/* Start the close handshake with code and reason. */
void ws_close(struct session *, uint16_t code, const char *reason);
/* Whether data may still be sent (open, not closing). */
int ws_is_open(const struct session *);
/* Keep a session's memory alive across an asynchronous call. */
void ws_ref(struct session *);
void ws_unref(struct session *);
/* A query parameter's raw value from the upgrade request; NULL if absent (or after the route's open). */
const char *ws_query_param(const struct session *, const char *name, size_t *len);
/* Log with the session's id, uuid, address and route. */
void ws_log(struct session *, enum log_level, const char *, ...) PRINTF_LIKE(3, 4);
/* The identity a valid token gave the session, or NULL. */
const struct auth_identity *ws_identity(const struct session *);
/* A refreshed token's identity replaces the session's (which is freed); id is malloc'd, taken over. */
void ws_set_identity(struct session *, struct auth_identity *id);
/* Window bits to compress a len-byte message to this session with, or 0 for plain. */
int ws_deflate_bits(const struct session *, size_t len);

#endif
