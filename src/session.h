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
	const struct cfg_route	*route;
	const struct route_ops	*ops;		/* the route's handler */
	void			*app;		/* the route's per-session state */
	struct reqinfo		*info;		/* until the route's open has run */
	/* Input not handled yet: a partial PROXY header or request head, requests held back; once open, paced frames. */
	char			*hbuf;
	struct sbuf		*msg;		/* message being assembled */
	char			*rooms_seen;	/* what describe() said when the session let go (access line) */
	struct auth_identity	*id;
	struct ws_decoder	*dec;		/* only while input ends inside a frame (ws_feed) */
	/*
	 * Members of one union are never needed in the same state: an API
	 * request is an HTTP request (SS_HTTP); ws_open clears what an open
	 * session starts from.
	 */
	union {
		uint64_t	 created;	/* ms; SS_PROXY, SS_HTTP: start of the current request */
		uint64_t	 opened;	/* ms; from ws_open: when upgraded */
	};
	uint64_t		 last_rx;	/* ms */
	union {
		uint64_t	 last_ping;	/* ms; SS_OPEN */
		uint64_t	 close_at;	/* ms; from SS_CLOSING: when our close went out */
	};
	union {
		uint64_t	 drop_logged;	/* ms; open: the last warning about dropped room messages */
		const char	*api_allow;	/* an API request: a 405's Allow */
	};
	uint64_t		 refill;	/* ms of the last rate limit refill */
	uint64_t		 btokens;	/* byte budget bucket, in thousandths of a byte */
	uint32_t		 hlen, hcap;	/* hcap: front.c's allocation size (0 for ws.c's) */
	uint32_t		 refs;		/* async callers holding the memory */
	uint32_t		 msgs_in, msgs_out;
	union {
		uint32_t	 dropped;	/* open: room messages lost to slow_client drop */
		uint32_t	 api_need;	/* bytes of an API request whose body is still arriving */
	};
	uint32_t		 tokens;	/* rate limit bucket, in thousandths of a message */
	uint8_t			 uuid[16];
	uint16_t		 close_sent;	/* code we sent, 0 if none */
	uint16_t		 close_code;	/* the first close code exchanged */
	uint16_t		 strikes;	/* messages refused in a row by the rate limit */
	uint8_t			 state;
	uint8_t			 closer;	/* who sent the first close: 'c', 's' or 0 */
	uint8_t			 pmd_bits;	/* permessage-deflate window; 0: not negotiated */
	uint8_t			 api_method;	/* enum api_metric of the API request */
	uint16_t		 paused:2;	/* not reading: WS_PAUSE_RATE, WS_PAUSE_ROUTE */
	uint16_t		 api:3;		/* the listener's FRONT_API, FRONT_API_ONLY */
	uint16_t		 close_rcvd:1;
	uint16_t		 freed:1;	/* conn gone; free when refs drop */
	uint16_t		 upgraded:1;
	uint16_t		 ip_counted:1;	/* counted by addrlimit_open */
	uint16_t		 no_auth:1;	/* upgraded only to say noAuth and close */
	uint16_t		 api_busy:1;	/* an API call waits for its answer: requests after it wait */
	uint16_t		 api_sync:1;	/* inside the API handler's call */
	uint16_t		 api_close:1;	/* close once the API call is answered */
	uint16_t		 api_head:1;	/* a HEAD: the answer's head only */
	uint16_t		 api_idle:1;	/* answered: idle (api_keepalive_timeout) until more bytes come */
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
