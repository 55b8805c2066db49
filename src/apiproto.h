/*
 * apiproto.h: the HTTP API's requests and answers, with no I/O. Routes a
 * request to its call, parses its query and JSON body with bounds, checks a
 * bearer key in constant time, and writes the answers and the control
 * messages /api/disconnect sends to every worker of every host.
 */
#ifndef ROOMD_APIPROTO_H
#define ROOMD_APIPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "jbuf.h"
#include "log.h"

enum api_call {
	API_PUBLISH,		/* POST /api/publish */
	API_BROADCAST,		/* POST /api/broadcast */
	API_DISCONNECT,		/* POST /api/disconnect */
	API_ROOMS,		/* GET /api/rooms */
	API_ROOM,		/* GET /api/rooms/ROOM */
	API_HISTORY,		/* GET /api/rooms/ROOM/history */
	API_INFO,		/* GET /api/info */
	API_NONE,		/* no such path */
};

#define API_MAX_ROOMS		100	/* rooms in one broadcast */
#define API_PAGE_MAX		1000	/* rooms one page of /api/rooms may ask for */
#define API_PAGE_DEFAULT	100
#define API_HISTORY_DEFAULT	50
#define API_MAX_REASON		123	/* bytes of a close reason (a close frame's payload is 125) */
#define API_MAX_WID		96	/* bytes of a worker's id in a control message */

struct api_limits {
	size_t		 max_name;	/* max_name_length */
	size_t		 max_roomid;	/* max_roomid_length */
	unsigned	 max_history;	/* history_size; 0: the server keeps none */
};

/* A parsed call. Pointers stay valid until the parser's next parse. */
struct api_req {
	enum api_call	 call;
	const char	*room;		/* publish, room, history: the room (decoded from the path) */
	size_t		 room_len;
	const char	*message;	/* publish, broadcast */
	size_t		 message_len;
	const char	*name;		/* publish, broadcast: who says it; NULL: the configured api_name */
	size_t		 name_len;
	size_t		 nrooms;	/* broadcast */
	const char *const *rooms;
	const size_t	*room_lens;
	const char	*user;		/* disconnect: sessions of this user (or NULL) ... */
	size_t		 user_len;
	int		 by_conn;	/* ... or the session with this uuid */
	uint8_t		 uuid[16];
	const char	*uuid_text;	/* the uuid as given (36 characters) */
	unsigned	 code;		/* disconnect: the close code */
	const char	*reason;	/* disconnect: the close reason ("" if none) */
	size_t		 reason_len;
	unsigned	 limit;		/* history: messages; rooms: rooms to scan for */
	uint64_t	 before;	/* history: messages before this offset; 0: up to now */
	uint64_t	 cursor;	/* rooms: where the last page ended; 0: the start */
};

/* Why a request is refused: the status, a short code and a sentence. */
struct api_error {
	int		 status;
	const char	*code;
	const char	*allow;		/* 405: the methods the path takes */
	char		 message[192];
};

struct apiproto;	/* a parser (its JSON parser and scratch space); one per worker */

struct apiproto *apiproto_new(void);
void apiproto_free(struct apiproto *);

/* Whether a request path is the API's: /api, or under /api/. */
int apiproto_is_api(const char *path, size_t len);
/*
 * Which call a method and path make (before the body is read): the call,
 * or API_NONE with err set (404 for an unknown path, 405 with allow for a
 * method the path does not take). HEAD counts as GET.
 */
enum api_call apiproto_route(const char *method, size_t ml, const char *path, size_t pl, struct api_error *);
/* The call a path names, whatever the method (API_NONE: none). */
enum api_call apiproto_path(const char *path, size_t pl);
/* The name of a call ("publish", ...; "other" for API_NONE), for metrics and logs. */
const char *apiproto_call_name(enum api_call);
/*
 * Parse a whole request into req: 0, or -1 with err (400 for bad input,
 * 404 and 405 as apiproto_route says). The body must be UTF-8; a call that
 * takes one wants a JSON object.
 */
int apiproto_parse(struct apiproto *, const char *method, size_t ml, const char *path, size_t pl,
    const char *query, size_t ql, const char *body, size_t bl, const struct api_limits *,
    struct api_req *, struct api_error *);
/*
 * Whether an Authorization value is "Bearer KEY" with KEY one of the nkeys
 * keys. Every key is compared, by its SHA-256 digest, in constant time, so
 * neither a key's bytes nor its length shows in how long the check takes.
 */
int apiproto_key_ok(const char *auth, size_t al, const char *const *keys, size_t nkeys);
/* Parse a uuid (either case): 0, or -1 if it is not one. */
int apiproto_uuid_parse(const char *s, size_t n, uint8_t u[16]);

/* Answers (each replaces the buffer's contents). */
void apiproto_error(struct jbuf *, const char *code, const char *message);
void apiproto_published(struct jbuf *, const char *id, uint64_t offset, const char *epoch, long num);
/* broadcast: begin, then one item per room (an error if code is not NULL), then end. */
void apiproto_broadcast_begin(struct jbuf *);
void apiproto_broadcast_item(struct jbuf *, int first, const char *room, size_t rl, const char *id,
    uint64_t offset, const char *epoch, long num, const char *code, const char *message);
void apiproto_broadcast_end(struct jbuf *);
void apiproto_disconnected(struct jbuf *, long closed, long workers, long answered);
/* rooms: begin, one item per room, then end with the cursor of the next page (0: no more). */
void apiproto_rooms_begin(struct jbuf *);
void apiproto_rooms_item(struct jbuf *, int first, const char *room, size_t rl, long num);
void apiproto_rooms_end(struct jbuf *, uint64_t cursor);
/* One room: its members (the first n of total; guests' names marked as roomd keeps them) and position. */
void apiproto_room(struct jbuf *, const char *room, size_t rl, const char *const *names, const size_t *lens,
    size_t n, long total, uint64_t offset, const char *epoch);
/* history: begin, one stored message event (JSON roomd wrote) each, then end with the room's position. */
void apiproto_history_begin(struct jbuf *, const char *room, size_t rl);
void apiproto_history_message(struct jbuf *, int first, const char *json, size_t len);
void apiproto_history_end(struct jbuf *, uint64_t offset, const char *epoch);

/* A worker's liveness record, as each worker keeps it in Redis for /api/info. */
struct api_worker {
	char		 instance[33];	/* the roomd host (master) it belongs to */
	char		 version[33];
	long long	 pid;
	long long	 started;	/* ms since the Unix epoch */
	long long	 connections;
	long long	 rooms;
};
/* Write a record (replaces the buffer's contents). */
void apiproto_worker_record(struct jbuf *, const struct api_worker *);
/* Read a record back: 0, or -1 if it is not one. */
int apiproto_worker_parse(struct apiproto *, const char *json, size_t len, struct api_worker *);
/* info: begin, one item per host (its workers summed), then end. now in ms since the Unix epoch. */
void apiproto_info_begin(struct jbuf *);
void apiproto_info_host(struct jbuf *, int first, const struct api_worker *oldest, long workers,
    long long connections, long long rooms, long long now);
void apiproto_info_end(struct jbuf *, long workers);

/*
 * Control messages on the channel every worker listens to. A disconnect
 * ("k") names the worker that asks and its request id; each worker
 * answers ("a") with how many sessions it closed.
 */
struct api_control {
	char		 kind;		/* 'k' a disconnect, 'a' an answer */
	char		 origin[API_MAX_WID + 1];
	uint64_t	 id;
	unsigned	 code;		/* k */
	int		 by_conn;	/* k: conn, else user */
	uint8_t		 uuid[16];
	const char	*user;		/* k: pointers into the message */
	size_t		 user_len;
	const char	*reason;
	size_t		 reason_len;
	long		 closed;	/* a */
};
/* Write a disconnect of req from worker origin (replaces the buffer's contents). */
void apiproto_kick(struct jbuf *, const char *origin, uint64_t id, const struct api_req *);
/* Write the answer to disconnect id of origin: closed sessions. */
void apiproto_kicked(struct jbuf *, const char *origin, uint64_t id, long closed);
/* Parse a control message: 0, or -1 if it is not one. */
int apiproto_control_parse(const char *p, size_t n, struct api_control *);

#endif
