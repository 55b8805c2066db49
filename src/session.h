/*
 * session.h: private to the session layer (front.c, ws.c). A session is
 * one client connection from its first byte to its free: front.c reads the
 * PROXY header and HTTP requests and opens the WebSocket, ws.c runs it.
 */
#ifndef ROOMD_SESSION_H
#define ROOMD_SESSION_H

#include <stdint.h>

#include "conn.h"
#include "loop.h"
#include "sbuf.h"
#include "ws.h"
#include "ws_frame.h"

enum sess_state { SS_PROXY, SS_HTTP, SS_OPEN, SS_CLOSING, SS_DONE };

/* Why an open session reads nothing (bytes already read wait in hbuf). */
#define WS_PAUSE_RATE	0x01	/* its rate bucket is empty (WS_RATE_PACE) */
#define WS_PAUSE_ROUTE	0x02	/* its route waits for an answer (ws_hold) */

/* Request facts later layers need, kept after the head buffer is gone. */
struct reqinfo {
	uint16_t	path_len, query_len, origin_len, cookie_len, auth_len;
	char		data[];		/* path, query, origin, cookie, authorization */
};

struct session {
	struct conn		 c;		/* first: conn callbacks cast back */
	uint8_t			 state;
	uint8_t			 close_rcvd;
	uint16_t		 close_sent;	/* code we sent, 0 if none */
	uint8_t			 uuid[16];
	const struct cfg_route	*route;
	const struct route_ops	*ops;		/* the route's handler */
	void			*app;		/* the route's per-session state */
	struct reqinfo		*info;
	uint64_t		 created, last_rx, last_ping, close_at;
	/* Input not handled yet: a partial PROXY header or request head, requests held back; once open, paced frames. */
	char			*hbuf;
	uint32_t		 hlen, hcap;	/* hcap: front.c's allocation size (0 for ws.c's) */
	struct sbuf		*msg;		/* message being assembled */
	char			*rooms_seen;	/* what describe() said when the session let go (access line) */
	uint32_t		 refs;		/* async callers holding the memory */
	uint8_t			 freed;		/* conn gone; free when refs drop */
	uint8_t			 upgraded;
	uint8_t			 closer;	/* who sent the first close: 'c', 's' or 0 */
	uint16_t		 close_code;	/* the first close code exchanged */
	uint32_t		 msgs_in, msgs_out;
	uint32_t		 dropped;	/* room messages lost to slow_client drop */
	uint64_t		 drop_logged;	/* ms of the last warning about it */
	uint64_t		 opened;	/* ms, when upgraded */
	uint8_t			 ip_counted;	/* counted by addrlimit_open */
	uint8_t			 no_auth;	/* upgraded only to say noAuth and close */
	uint8_t			 pmd_bits;	/* permessage-deflate window; 0: not negotiated */
	uint8_t			 paused;	/* not reading: WS_PAUSE_RATE, WS_PAUSE_ROUTE */
	uint16_t		 strikes;	/* messages refused in a row by the rate limit */
	uint32_t		 tokens;	/* rate limit bucket, in thousandths of a message */
	uint64_t		 refill;	/* ms of the last refill */
	uint64_t		 btokens;	/* byte budget bucket, in thousandths of a byte */
	struct auth_identity	*id;
	struct ws_decoder	*dec;		/* only while input ends inside a frame (ws_feed) */
};

static inline struct loop *sess_loop(const struct session *s) { return loop_of(s->c.ctx); }
static inline const struct config *sess_cfg(const struct session *s) { return sess_loop(s)->cfg; }

/* ws.c, for front.c: */
/* The upgrade was answered with 101: frames flow from now on. */
void ws_open(struct session *);
/* Bytes of an open (or closing) session: frames. */
void ws_feed(struct session *, uint8_t *, size_t);
/* Timeouts of an open or closing session. */
void ws_tick(struct session *, uint64_t now);
/* Graceful stop: the route lets go (others hear "out"), then close 1001. */
void ws_shutdown(struct session *);
/* The conn is gone: the access line, the route's state, the message being assembled. */
void ws_release(struct session *);

#endif
